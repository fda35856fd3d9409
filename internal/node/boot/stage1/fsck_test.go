package stage1

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CheckExt4 with the real e2fsck: a clean filesystem passes, one with a
// wrecked superblock is an error naming the device, and an initramfs
// without e2fsck says so instead of failing.
func TestCheckExt4(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4")
	}
	if _, err := os.Stat("/sbin/e2fsck"); err != nil {
		t.Skip("no /sbin/e2fsck")
	}
	dir := t.TempDir()
	mkfs := func(name string) string {
		img := filepath.Join(dir, name)
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "4M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		return img
	}
	clean := mkfs("clean.img")
	broken := mkfs("broken.img")
	f, err := os.OpenFile(broken, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 1024), 1024) // the primary superblock
	f.Close()

	for _, tc := range []struct {
		name, root, dev string
		found           bool
		err             string
	}{
		{"clean", "/", clean, true, ""},
		{"broken", "/", broken, true, "e2fsck -p " + broken + ": exit status 8"},
		{"no e2fsck", dir, clean, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, err := CheckExt4(tc.root, tc.dev)
			if found != tc.found || (err == nil) != (tc.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
				t.Errorf("CheckExt4 = %v, %v; want %v, %q", found, err, tc.found, tc.err)
			}
		})
	}
}
