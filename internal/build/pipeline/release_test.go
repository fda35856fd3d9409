package pipeline

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/release"
)

// TestBundle bundles a build and opens the bundle as a node does: the
// parts come back byte for byte, the verity parameters are the build's.
func TestBundle(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not installed")
	}
	dir := t.TempDir()
	key, pub := testKeys(t)
	build := fakeBuild(t, dir, "1.0", "amd64", "amd64", "")
	path, err := Bundle(BundleOptions{OutDir: dir, Version: "1.0", Target: "amd64", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "kestrel-1.0-amd64.bundle") {
		t.Errorf("bundle written to %s", path)
	}
	pk, err := release.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	r, err := release.OpenBundle(context.Background(), path, []ed25519.PublicKey{pk}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if m := r.Manifest(); m.Version != "1.0" || m.Arch != "amd64" || m.Verity != build.Verity {
		t.Errorf("manifest %+v", m)
	}
	for part, ext := range map[string]string{release.PartKernel: ".vmlinuz", release.PartInitrd: ".initrd", release.PartRootfs: ".rootfs"} {
		rc, err := r.Open(part)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		want, _ := os.ReadFile(filepath.Join(dir, Prefix("1.0", "amd64")+ext))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("part %s: %d bytes (%v), build %d", part, len(got), err, len(want))
		}
	}

	// A part changed since the build is refused, and no bundle is left.
	os.WriteFile(filepath.Join(dir, Prefix("1.0", "amd64")+".initrd"), []byte("changed"), 0o644)
	os.Remove(path)
	if _, err := Bundle(BundleOptions{OutDir: dir, Version: "1.0", Target: "amd64", Key: key}); err == nil || !strings.Contains(err.Error(), "part initrd") {
		t.Errorf("bundle of a changed build: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.bundle*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
