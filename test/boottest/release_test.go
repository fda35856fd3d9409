package boottest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kestrel-os/kestrel/internal/release"
)

// testRelease is a second release for upgrade tests: its bundle, and the
// same release as a directory (what the upgrade image carries) under
// Dir/dir, with the names of the files there.
type testRelease struct {
	Dir      string // served to the guest: the bundle and dir/
	Bundle   string
	DirFiles []string
}

// buildRelease builds an image variant at version with the test signing
// key (the one every test image trusts) and its bundle, once per test
// binary and variant.
func buildRelease(t testing.TB, o imageOpts, version string) testRelease {
	t.Helper()
	o.Version, o.Bundle = version, true
	img := buildImageWith(t, o)
	target := o.Target
	if target == "" {
		target = "amd64"
	}
	bundle := filepath.Join(img.Dir, fmt.Sprintf("kestrel-%s-%s.bundle", version, target))
	rel := testRelease{Dir: img.Dir, Bundle: bundle}
	rel.DirFiles = splitBundle(t, bundle, filepath.Join(img.Dir, "dir"))
	return rel
}

// splitBundle writes a bundle's signed manifest and parts as a release
// directory (release.json and one file per part), the layout of the
// upgrade image's /kestrel/release, and returns the file names.
func splitBundle(t testing.TB, bundle, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte(release.BundleMagic)) {
		t.Fatalf("%s: not a bundle", bundle)
	}
	off := len(release.BundleMagic) + 4
	n := int(binary.BigEndian.Uint32(data[off:]))
	off += 4
	env := data[off : off+n]
	off += n
	pub, err := release.LoadPublicKey(testKeys(t).Public)
	if err != nil {
		t.Fatal(err)
	}
	m, err := release.Verify(env, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	files := []string{release.ManifestFile}
	if err := os.WriteFile(filepath.Join(dir, release.ManifestFile), env, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Parts {
		if err := os.WriteFile(filepath.Join(dir, p.Name), data[off:off+int(p.Size)], 0o644); err != nil {
			t.Fatal(err)
		}
		off += int(p.Size)
		files = append(files, p.Name)
	}
	return files
}
