package esp

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
)

// mkfsFAT writes a FAT filesystem of the given FAT size (16 or 32) with
// dosfstools' mkfs.fat, as the image builder's ESP is made, and returns
// its path.
func mkfsFAT(t *testing.T, dir string, bits string) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.fat"); err != nil {
		t.Skip("mkfs.fat not installed: run scripts/deps.sh")
	}
	p := filepath.Join(dir, "vda1")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.fat", "-F", bits, p).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat -F %s: %v\n%s", bits, err, out)
	}
	return p
}

// TestDirty reads the dirty flag of real FAT16 and FAT32 filesystems:
// clear as mkfs.fat leaves it, set where Linux's vfat sets it on a
// read-write mount (the state byte of each layout), and an error for what
// is not a FAT.
func TestDirty(t *testing.T) {
	for _, tc := range []struct {
		bits string
		off  int64
	}{{"16", offState16}, {"32", offState32}} {
		t.Run("FAT"+tc.bits, func(t *testing.T) {
			p := mkfsFAT(t, t.TempDir(), tc.bits)
			if d, err := Dirty(p); err != nil || d {
				t.Fatalf("fresh mkfs.fat: dirty %v, %v; want clean", d, err)
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{fatStateDirty}, tc.off); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if d, err := Dirty(p); err != nil || !d {
				t.Fatalf("flag set: dirty %v, %v; want dirty", d, err)
			}
			// fsck.fat clears it (exit 1: it changed something).
			if _, err := exec.LookPath("/sbin/fsck.fat"); err == nil {
				out, _ := exec.Command("/sbin/fsck.fat", "-a", "-w", p).CombinedOutput()
				if d, err := Dirty(p); err != nil || d {
					t.Errorf("after fsck.fat -a: dirty %v, %v; want clean\n%s", d, err, out)
				}
			}
		})
	}
	notFAT := filepath.Join(t.TempDir(), "zeros")
	if err := os.WriteFile(notFAT, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Dirty(notFAT); err == nil {
		t.Error("zeros: no error")
	}
}

// TestMountSkipsCleanFAT: a read-write mount of a cleanly unmounted FAT
// does not run the check; a dirty one does.
func TestMountSkipsCleanFAT(t *testing.T) {
	for _, dirty := range []bool{false, true} {
		dir := t.TempDir()
		p := mkfsFAT(t, dir, "32")
		if dirty {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{fatStateDirty}, offState32); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		devs := []blockdev.Device{{Name: "vda", DevName: "vda"}, {Name: "vda1", DevName: "vda1", Disk: "vda", PartNum: 1, PartName: layout.PartESP}}
		checked := false
		o := Options{Sys: filepath.Join(dir, "sys"), Dev: dir, Target: filepath.Join(dir, "esp"),
			Check: func(string) (string, error) { checked = true; return "", nil }}
		if err := Mount(devs, o, func(string, string, string, uintptr, string) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if checked != dirty {
			t.Errorf("dirty %v: checked %v", dirty, checked)
		}
	}
}
