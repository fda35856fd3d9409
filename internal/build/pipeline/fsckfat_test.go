package pipeline

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kestrel-os/kestrel/internal/build/deb"
	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// TestInstallFsckFAT installs fsck.fat from the pinned Debian packages
// into an empty tree and runs it there, chrooted, on a real FAT image:
// the tree holds fsck.fat, the loader and libc.so.6 and nothing else, and
// that is enough for fsck.fat to check a filesystem.
func TestInstallFsckFAT(t *testing.T) {
	for _, tool := range []string{"apt-get", "mkfs.fat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: run scripts/deps.sh", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	v, err := imagedef.LoadVersions("../../../versions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if v.Debian.Dosfstools == "" {
		t.Skip("versions.yaml pins no dosfstools")
	}
	debs, err := filepath.Abs("../../../.cache/debs")
	if err != nil {
		t.Fatal(err)
	}
	var roots []string
	for _, p := range []deb.Package{
		{Name: "dosfstools", Version: v.Debian.Dosfstools, Arch: "amd64"},
		{Name: "libc6", Version: v.Debian.Libc6, Arch: "amd64"},
	} {
		root, err := deb.FetchUnpack(p, debs, nil)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
	}

	dir := t.TempDir()
	added, err := installFsckFAT(roots[0], roots[1], dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var size int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(p, dir)
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			rel += " -> " + target
		} else if st, err := d.Info(); err == nil {
			size += st.Size()
		}
		got = append(got, rel)
		return nil
	})
	want := []string{
		"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		layout.FsckFAT,
	}
	if !slices.Equal(got, want) {
		t.Errorf("tree:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if added != size {
		t.Errorf("reported %d bytes added, the tree holds %d", added, size)
	}
	t.Logf("fsck.fat with its glibc: %d bytes", added)

	img := filepath.Join(dir, "esp.img")
	if out, err := exec.Command("mkfs.fat", "-F", "32", "-C", img, "65536").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat: %v\n%s", err, out)
	}
	cmd := exec.Command(layout.FsckFAT, "-n", "/esp.img")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run fsck.fat in the tree: %v", err)
	}
	// Without glibc's iconv modules it says so and uses its own table;
	// anything else on stderr is a missing piece.
	var other []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !strings.HasPrefix(l, "Cannot initialize conversion ") && l != "Using internal CP850 conversion table" {
			other = append(other, l)
		}
	}
	if err != nil || !strings.Contains(stdout.String(), "/esp.img: 0 files") || len(other) > 0 {
		t.Errorf("fsck.fat -n on a fresh FAT32 in the tree: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
}
