package diskimage

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/kestrel-os/kestrel/internal/layout"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs it)", tool)
		}
	}
}

// build writes a small image and returns its path and the spec.
func build(t *testing.T) (string, Spec) {
	t.Helper()
	dir := t.TempDir()
	loader := filepath.Join(dir, "loader.efi")
	if err := os.WriteFile(loader, bytes.Repeat([]byte("MZ"), 70000), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.squashfs")
	if err := os.WriteFile(root, bytes.Repeat([]byte("hsqs-payload"), 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Arch: "amd64", Seed: "test",
		ESPMiB: 40, RootMiB: 4, StateMiB: 16,
		ESP: map[string]string{
			layout.ESPBootloaderX64: loader,
			"/kestrel/a/vmlinuz":    loader,
		},
		ESPData: map[string][]byte{
			layout.ESPLoaderConf:             []byte("timeout 0\n"),
			"/loader/entries/kestrel-a.conf": []byte("title Kestrel\n"),
		},
		RootA:     root,
		StateDirs: layout.PersistentDirs,
		Time:      1700000000,
	}
	out := filepath.Join(dir, "disk.img")
	if err := Build(spec, out); err != nil {
		t.Fatal(err)
	}
	return out, spec
}

// partition copies partition p of img into its own file.
func partition(t *testing.T, img string, p *gpt.Partition) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), p.Name+".img")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := io.Copy(o, io.NewSectionReader(f, int64(p.Start*sectorSize), int64(p.Size))); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildReadBack(t *testing.T) {
	needTools(t, "mkfs.ext4", "e2fsck", "fsck.fat")
	img, spec := build(t)
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	g, ok := table.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %s, want gpt", table.Type())
	}
	byName := map[string]*gpt.Partition{}
	for _, p := range g.Partitions {
		if p.Type != gpt.Unused {
			byName[p.Name] = p
		}
	}
	parts := []struct {
		name string
		typ  gpt.Type
		mib  uint64
	}{
		{layout.PartESP, gpt.EFISystemPartition, 40},
		{layout.PartRootA, gpt.LinuxRootX86_64, 4},
		{layout.PartRootB, gpt.LinuxRootX86_64, 4},
		{layout.PartState, gpt.LinuxFilesystem, 16},
	}
	for _, want := range parts {
		p, ok := byName[want.name]
		if !ok {
			t.Errorf("no partition named %q", want.name)
			continue
		}
		if p.Type != want.typ || p.Size != want.mib*mib || p.Start%alignSectors != 0 {
			t.Errorf("%s: type %s size %d start %d, want %s %d MiB 1 MiB-aligned", want.name, p.Type, p.Size, p.Start, want.typ, want.mib)
		}
	}

	t.Run("esp", func(t *testing.T) {
		esp := partition(t, img, byName[layout.PartESP])
		if out, err := exec.Command("fsck.fat", "-n", esp).CombinedOutput(); err != nil {
			t.Errorf("fsck.fat -n: %v\n%s", err, out)
		}
		if out, err := exec.Command("blkid", "-p", "-s", "UUID", "-o", "value", esp).Output(); err != nil || len(bytes.TrimSpace(out)) != 9 || bytes.HasPrefix(out, []byte("0000-0000")) {
			t.Errorf("ESP serial %q (%v), want a set XXXX-XXXX", out, err)
		}
		fs, err := d.GetFilesystem(1)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(fs.Label()); got != layout.LabelESP {
			t.Errorf("ESP label %q, want %q", got, layout.LabelESP)
		}
		for p, data := range spec.ESPData {
			got, err := fs.ReadFile(p)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("ESP %s: %q, %v; want %q", p, got, err, data)
			}
		}
		for p, src := range spec.ESP {
			want, _ := os.ReadFile(src)
			got, err := fs.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("ESP %s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
			}
		}
	})

	t.Run("root", func(t *testing.T) {
		want, _ := os.ReadFile(spec.RootA)
		got, _ := os.ReadFile(partition(t, img, byName[layout.PartRootA]))
		if !bytes.Equal(got[:len(want)], want) {
			t.Error("root-a does not start with the squashfs bytes")
		}
		empty, _ := os.ReadFile(partition(t, img, byName[layout.PartRootB]))
		if !bytes.Equal(empty, make([]byte, len(empty))) {
			t.Error("root-b is not empty")
		}
	})

	t.Run("state", func(t *testing.T) {
		state := partition(t, img, byName[layout.PartState])
		if out, err := exec.Command("e2fsck", "-fn", state).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn: %v\n%s", err, out)
		}
		out, err := exec.Command("debugfs", "-R", "ls -l /", state).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs: %v\n%s", err, out)
		}
		for _, dir := range layout.PersistentDirs {
			if !strings.Contains(string(out), " "+dir+"\n") && !strings.Contains(string(out), " "+dir+" ") {
				t.Errorf("state lacks /%s:\n%s", dir, out)
			}
		}
		label, err := exec.Command("e2label", state).Output()
		if err != nil || strings.TrimSpace(string(label)) != layout.LabelState {
			t.Errorf("state label %q (%v), want %q", label, err, layout.LabelState)
		}
	})
}

func TestReproducible(t *testing.T) {
	needTools(t, "mkfs.ext4")
	a, _ := build(t)
	// FAT stores time in 2-second steps: make the host clock differ.
	time.Sleep(2100 * time.Millisecond)
	b, _ := build(t)
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two images of the same inputs differ")
	}
}

func TestSpecErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"unknown arch", Spec{Arch: "mips", ESPMiB: 100, RootMiB: 10, StateMiB: 10}, "arch"},
		{"zero size", Spec{Arch: "amd64", ESPMiB: 100, RootMiB: 0, StateMiB: 10}, "root-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := tt.spec.Partitions(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	// A root image larger than its partition is refused.
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 3*mib), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Build(Spec{Arch: "amd64", Seed: "x", ESPMiB: 40, RootMiB: 2, StateMiB: 16, RootA: big}, filepath.Join(dir, "d.img"))
	if err == nil || !strings.Contains(err.Error(), "partition") {
		t.Errorf("oversized root: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.img")); err == nil {
		t.Error("a failed build left an image behind")
	}
}
