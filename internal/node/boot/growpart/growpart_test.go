package growpart

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

const mib = 1 << 20

// makeImage writes a GPT image like the builder's: esp, root-a, root-b,
// state, with state last and small.
func makeImage(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mb := uint64(mib / 512)
	table := &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: 1 * mb, End: 9*mb - 1, Type: gpt.EFISystemPartition, Name: "esp"},
			{Index: 2, Start: 9 * mb, End: 17*mb - 1, Type: gpt.LinuxFilesystem, Name: "root-a"},
			{Index: 3, Start: 17 * mb, End: 25*mb - 1, Type: gpt.LinuxFilesystem, Name: "root-b"},
			{Index: 4, Start: 25 * mb, End: 29*mb - 1, Type: gpt.LinuxFilesystem, Name: "state"},
		},
	}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	return path
}

func growFile(t *testing.T, path, name string) Result {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	r, err := Grow(f, st.Size(), name)
	if err != nil {
		t.Fatalf("Grow: %v", err)
	}
	return r
}

func TestGrowToEndOfDisk(t *testing.T) {
	path := makeImage(t, 32*mib)
	if err := os.Truncate(path, 100*mib); err != nil {
		t.Fatal(err)
	}
	r := growFile(t, path, "state")
	if !r.Grown || !r.MovedBackup || r.PartNum != 4 {
		t.Fatalf("Grow = %+v, want grown partition 4 with moved backup", r)
	}
	wantEnd := uint64(100*mib/512 - 1) // 1 MiB aligned: the GPT backup (33 sectors) takes the last MiB
	wantEnd = (wantEnd-33+1)/2048*2048 - 1
	if r.NewEnd != wantEnd {
		t.Errorf("NewEnd = %d, want %d", r.NewEnd, wantEnd)
	}
	if r.BackupLBA != 100*mib/512-1 {
		t.Errorf("BackupLBA = %d", r.BackupLBA)
	}

	// Read it back with go-diskfs: primary and backup agree and the backup
	// is at the end of the disk.
	f, _ := os.Open(path)
	defer f.Close()
	tab, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	if tab.RecoveredFromBackup {
		t.Error("primary GPT invalid after Grow")
	}
	if err := tab.Verify(f, 100*mib); err != nil {
		t.Errorf("Verify: %v", err)
	}
	for _, p := range tab.Partitions {
		if p.Name == "state" && p.End != wantEnd {
			t.Errorf("state ends at %d on disk, want %d", p.End, wantEnd)
		}
		if p.Name == "root-b" && p.End != 25*mib/512-1 {
			t.Errorf("root-b moved: %+v", p)
		}
	}

	// And with util-linux, the reference reader, when it is installed.
	if sfdisk, err := exec.LookPath("sfdisk"); err == nil {
		out, err := exec.Command(sfdisk, "-d", path).CombinedOutput()
		if err != nil {
			t.Fatalf("sfdisk -d: %v\n%s", err, out)
		}
		s := string(out)
		if strings.Contains(strings.ToLower(s), "warn") || strings.Contains(s, "corrupt") {
			t.Errorf("sfdisk complains:\n%s", s)
		}
		wantLine := "start=       51200, size=" // state: 25 MiB in
		if !strings.Contains(s, wantLine) || !strings.Contains(s, `name="state"`) {
			t.Errorf("sfdisk output lacks the state partition:\n%s", s)
		}
		if !strings.Contains(s, "last-lba: 204766") {
			t.Errorf("sfdisk last-lba is not at the new end:\n%s", s)
		}
	}

	// Idempotent: a second run changes nothing.
	if r2 := growFile(t, path, "state"); r2.Grown || r2.MovedBackup || r2.NewEnd != wantEnd {
		t.Errorf("second Grow = %+v, want no change", r2)
	}
}

func TestGrowRefusals(t *testing.T) {
	path := makeImage(t, 32*mib)
	os.Truncate(path, 64*mib)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	defer f.Close()
	for _, tc := range []struct{ name, errPart string }{
		{"root-a", "not the last"},
		{"nope", "no partition named"},
	} {
		if _, err := Grow(f, 64*mib, tc.name); err == nil || !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("Grow(%q) err = %v, want %q", tc.name, err, tc.errPart)
		}
	}
}

func TestGrowSameSizeDisk(t *testing.T) {
	path := makeImage(t, 32*mib)
	r := growFile(t, path, "state")
	// 29 MiB - 1 ends state; the disk's last usable sector lies in the last
	// MiB, so state grows to 31 MiB - 1 once, then never again.
	if r.NewEnd != 31*mib/512-1 {
		t.Errorf("NewEnd = %d", r.NewEnd)
	}
	if r2 := growFile(t, path, "state"); r2.Grown {
		t.Errorf("second Grow grew again: %+v", r2)
	}
}

func TestExt4Super(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	path := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(path, 16*mib)
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-L", "KESTREL_STATE", path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	f, _ := os.Open(path)
	defer f.Close()
	s, err := ReadExt4Super(f)
	if err != nil {
		t.Fatal(err)
	}
	if s.BlockSize != 4096 || s.Blocks != 16*mib/4096 {
		t.Errorf("super = %+v", s)
	}
	if want, grow := Ext4Target(s, 64*mib); !grow || want != 64*mib/4096 {
		t.Errorf("Ext4Target(64 MiB) = %d, %v", want, grow)
	}
	if _, grow := Ext4Target(s, 16*mib); grow {
		t.Error("Ext4Target says grow at the same size")
	}
	if _, err := ReadExt4Super(strings.NewReader(strings.Repeat("x", 4096))); err == nil {
		t.Error("garbage accepted as ext4")
	}
}
