package upgradeimage

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const version = "v1.4.0"

var created = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fakeRelease writes random artifacts for each arch and returns the release
// and, per arch, the sha256 of each artifact computed here independently.
func fakeRelease(t *testing.T, withBundle bool, arches ...string) (Release, map[string]map[string]string) {
	t.Helper()
	dir := t.TempDir()
	sums := map[string]map[string]string{}
	r := Release{Version: version, Created: created}
	for _, arch := range arches {
		sums[arch] = map[string]string{}
		write := func(name string, size int) string {
			b := make([]byte, size)
			rand.Read(b)
			p := filepath.Join(dir, arch+"-"+name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(b)
			sums[arch][name] = hex.EncodeToString(h[:])
			return p
		}
		a := Artifacts{
			Arch:    arch,
			Kernel:  write(KernelName, 3000),
			Initrd:  write(InitrdName, 5000),
			Rootfs:  write(RootfsName, 1<<20+17),
			Release: write(ReleaseName, 900),
			Kestrel: write("kestrel", 4096),
		}
		if withBundle {
			a.Bundle = write(BundleName, 700)
		}
		r.Arches = append(r.Arches, a)
	}
	return r, sums
}

// TestRegistryRoundTrip pushes the index to an in-process registry, pulls it
// back by tag and by digest, selects each arch from the index and checks
// the artifacts inside against the input checksums.
func TestRegistryRoundTrip(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	r, sums := fakeRelease(t, true, "amd64", "arm64", "arm")
	idx, manifests, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(manifests) != 3 {
		t.Fatalf("%d manifests", len(manifests))
	}
	tag := host + "/kestrel/" + Repository + ":" + Tag(version)
	pushed, err := Push(context.Background(), tag, idx)
	if err != nil {
		t.Fatal(err)
	}

	byTag, err := remote.Index(mustRef(t, tag))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := byTag.Digest(); d != pushed {
		t.Fatalf("pulled index %s, pushed %s", d, pushed)
	}
	byDigest, err := remote.Index(mustRef(t, host+"/kestrel/"+Repository+"@"+pushed.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, err := byDigest.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 3 || im.Annotations[AnnotationVersion] != version {
		t.Errorf("index manifest %+v", im)
	}

	for _, tc := range []struct {
		platform v1.Platform
		arch     string
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, "amd64"},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, "arm64"},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, "arm"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			img, err := remote.Image(mustRef(t, tag), remote.WithPlatform(tc.platform))
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != tc.arch || cf.OS != "linux" {
				t.Errorf("config platform %s/%s", cf.OS, cf.Architecture)
			}
			if strings.Join(cf.Config.Entrypoint, " ") != "/usr/bin/kestrel upgrade --from /kestrel/release --host /host" {
				t.Errorf("entrypoint %q", cf.Config.Entrypoint)
			}
			if cf.Config.Labels[LabelVersion] != version || cf.Config.Labels[LabelArch] != tc.arch || cf.Config.Labels[LabelUpgradeImage] != fmt.Sprint(ManifestFormat) {
				t.Errorf("labels %v", cf.Config.Labels)
			}

			mf, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if mf.MediaType != types.OCIManifestSchema1 || len(mf.Layers) != 2 ||
				mf.Layers[0].MediaType != types.OCILayer || mf.Layers[1].MediaType != types.OCIUncompressedLayer {
				t.Errorf("manifest %+v: want an OCI manifest with a gzip binary layer and an uncompressed release layer", mf)
			}

			files := map[string]string{}
			m, err := Verify(img, func(name string, r io.Reader) error {
				h := sha256.New()
				_, err := io.Copy(h, r)
				files[name] = hex.EncodeToString(h.Sum(nil))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if m.Arch != tc.arch || m.Version != version || len(m.Files) != 5 {
				t.Errorf("manifest %+v", m)
			}
			for _, n := range []string{KernelName, InitrdName, RootfsName, ReleaseName, BundleName} {
				if files[n] != sums[tc.arch][n] {
					t.Errorf("%s: pulled sha256 %s, input %s", n, files[n], sums[tc.arch][n])
				}
				if f, _ := m.File(n); f.SHA256 != sums[tc.arch][n] {
					t.Errorf("%s: manifest sha256 %s, input %s", n, f.SHA256, sums[tc.arch][n])
				}
			}
			// The kestrel binary is the entrypoint's target.
			if got := fileInImage(t, img, "usr/bin/kestrel"); got != sums[tc.arch]["kestrel"] {
				t.Errorf("kestrel binary sha256 %s, input %s", got, sums[tc.arch]["kestrel"])
			}
		})
	}
}

// fileInImage returns the sha256 of a file in the image's layers.
func fileInImage(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			if hdr.Name == path {
				if hdr.Mode != 0o755 || hdr.Uid != 0 {
					t.Errorf("%s: mode %o uid %d", path, hdr.Mode, hdr.Uid)
				}
				h := sha256.New()
				io.Copy(h, tr)
				rc.Close()
				return hex.EncodeToString(h.Sum(nil))
			}
		}
		rc.Close()
	}
	t.Fatalf("%s not in image", path)
	return ""
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReproducible(t *testing.T) {
	r, _ := fakeRelease(t, false, "amd64", "arm")
	a, _, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	da, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same inputs: %s and %s", da, db)
	}
}

func TestLayoutAndArchive(t *testing.T) {
	r, sums := fakeRelease(t, false, "arm64")
	idx, _, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()

	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(dir, version, idx); err != nil {
		t.Fatal(err)
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	tm, _ := top.IndexManifest()
	if len(tm.Manifests) != 1 || tm.Manifests[0].Digest != want || tm.Manifests[0].Annotations[AnnotationRefName] != version {
		t.Fatalf("index.json %+v, want our index %s named %s", tm, want, version)
	}
	inner, err := top.ImageIndex(want)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := inner.IndexManifest()
	img, err := inner.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Verify(img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := m.File(RootfsName); f.SHA256 != sums["arm64"][RootfsName] || f.Size != 1<<20+17 {
		t.Errorf("rootfs entry %+v", f)
	}
	if err := WriteLayout(dir, version, idx); err == nil {
		t.Error("wrote a layout over a non-empty directory")
	}

	archive := filepath.Join(t.TempDir(), "upgrade.oci.tar")
	if err := WriteArchive(archive, version, idx); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("archive mode %v (%v), want 0644", fi.Mode(), err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[hdr.Name] = true
	}
	for _, n := range []string{"oci-layout", "index.json", "blobs/sha256/" + want.Hex} {
		if !names[n] {
			t.Errorf("archive lacks %s (has %v)", n, names)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(r *Release)
		want string
	}{
		{"no version", func(r *Release) { r.Version = "" }, "version is empty"},
		{"no arches", func(r *Release) { r.Arches = nil }, "no arches"},
		{"unknown arch", func(r *Release) { r.Arches[0].Arch = "riscv64" }, `unknown arch "riscv64"`},
		{"duplicate arch", func(r *Release) { r.Arches = append(r.Arches, r.Arches[0]) }, "given twice"},
		{"missing kernel", func(r *Release) { r.Arches[0].Kernel = "/nonexistent/vmlinuz" }, "/nonexistent/vmlinuz"},
		{"no rootfs", func(r *Release) { r.Arches[0].Rootfs = "" }, "no rootfs given"},
		{"no signed release manifest", func(r *Release) { r.Arches[0].Release = "" }, "no release.json given"},
		{"no kestrel", func(r *Release) { r.Arches[0].Kestrel = "" }, "no kestrel binary"},
		{"directory as initrd", func(r *Release) { r.Arches[0].Initrd = os.TempDir() }, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := fakeRelease(t, false, "amd64")
			tt.mod(&r)
			if _, _, err := Build(r); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// An artifact that changes after Build is caught when the image is written,
// and Verify refuses a layer whose content does not match its manifest.
func TestChangedArtifactDetected(t *testing.T) {
	r, _ := fakeRelease(t, false, "amd64")
	idx, _, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Arches[0].Rootfs, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = WriteLayout(filepath.Join(t.TempDir(), "l"), version, idx)
	if err == nil || !strings.Contains(err.Error(), "changed while the image was being written") {
		t.Fatalf("err = %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	mk := func(entries ...[2]string) v1.Image {
		var files []source
		dir := t.TempDir()
		var first *inline
		for i, e := range entries {
			if i == 0 {
				first = &inline{name: e[0], data: []byte(e[1])}
				continue
			}
			p := filepath.Join(dir, filepath.Base(e[0]))
			os.WriteFile(p, []byte(e[1]), 0o644)
			h := sha256.Sum256([]byte(e[1]))
			files = append(files, source{name: e[0], path: p, size: int64(len(e[1])), sha256: hex.EncodeToString(h[:]), mode: 0o644})
		}
		img, _, err := Image(version, created, Artifacts{Arch: "amd64", Kernel: files[0].path, Initrd: files[0].path, Rootfs: files[0].path, Release: files[0].path, Kestrel: files[0].path})
		if err != nil {
			t.Fatal(err)
		}
		l := &streamLayer{open: tarOpener(created, nil, first, files)}
		layers, _ := img.Layers()
		return fakeImage{Image: img, layers: []v1.Layer{layers[0], l}}
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	manifest := func(files ...string) string {
		s := `{"format":` + fmt.Sprint(ManifestFormat) + `,"version":"v1","arch":"amd64","files":[`
		for i := 0; i+1 < len(files); i += 2 {
			if i > 0 {
				s += ","
			}
			s += `{"name":"` + files[i] + `","size":` + strconv.Itoa(len(files[i+1])) + `,"sha256":"` + sum(files[i+1]) + `"}`
		}
		return s + "]}"
	}
	tests := []struct {
		name string
		img  v1.Image
		want string
	}{
		{"content differs", mk([2]string{"kestrel/release/manifest.json", manifest("vmlinuz", "AAAA")}, [2]string{"kestrel/release/vmlinuz", "BBBB"}), "manifest says"},
		{"unlisted file", mk([2]string{"kestrel/release/manifest.json", manifest("vmlinuz", "A")}, [2]string{"kestrel/release/vmlinuz", "A"}, [2]string{"kestrel/release/extra", "x"}), "not listed"},
		{"listed file missing", mk([2]string{"kestrel/release/manifest.json", manifest("vmlinuz", "A", "initrd", "B")}, [2]string{"kestrel/release/vmlinuz", "A"}), "not in the layer"},
		{"future format", mk([2]string{"kestrel/release/manifest.json", `{"format":99}`}, [2]string{"kestrel/release/vmlinuz", "A"}), "format 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Verify(tt.img, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

type fakeImage struct {
	v1.Image
	layers []v1.Layer
}

func (f fakeImage) Layers() ([]v1.Layer, error) { return f.layers, nil }

var update = flag.Bool("update", false, "rewrite testdata golden files")

// TestGolden pins manifest.json and the image and index digests for fixed
// inputs (testdata/release): a change in layout, labels or tar encoding
// shows up here. Rewrite with -update after a deliberate change (and say so
// in the commit: nodes and Plans see new digests).
func TestGolden(t *testing.T) {
	a := Artifacts{Arch: "amd64", Board: "generic-uefi",
		Kernel: "testdata/release/vmlinuz", Initrd: "testdata/release/initrd", Rootfs: "testdata/release/rootfs", Release: "testdata/release/release.json",
		Kestrel: "testdata/release/kestrel", Bundle: "testdata/release/bundle.kestrel"}
	arm := a
	arm.Arch, arm.Board = "arm", ""
	idx, ms, err := Build(Release{Version: version, Created: created, Arches: []Artifacts{a, arm}})
	if err != nil {
		t.Fatal(err)
	}
	mj, _ := json.MarshalIndent(ms[0], "", "  ")
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	digests := "index " + d.String() + "\n"
	for _, m := range im.Manifests {
		digests += m.Platform.Architecture + m.Platform.Variant + " " + m.Digest.String() + "\n"
	}
	for file, got := range map[string][]byte{
		"testdata/manifest-amd64.json": append(mj, '\n'),
		"testdata/digests.txt":         []byte(digests),
	} {
		if *update {
			os.WriteFile(file, got, 0o644)
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (go test -update writes it)", err)
		}
		if string(want) != string(got) {
			t.Errorf("%s:\n--- got\n%s--- want\n%s", file, got, want)
		}
	}
}

func TestTag(t *testing.T) {
	for in, want := range map[string]string{
		"v1.4.0":             "v1.4.0",
		"v1.4.0+build.7":     "v1.4.0-build.7",
		"1.0.0-rc.1+g1a2b/x": "1.0.0-rc.1-g1a2b-x",
		"+weird":             "weird",
	} {
		if got := Tag(in); got != want {
			t.Errorf("Tag(%q) = %q, want %q", in, got, want)
		}
		if _, err := name.NewTag("example.net/kestrel-upgrade:" + Tag(in)); err != nil {
			t.Errorf("Tag(%q) is not a valid tag: %v", in, err)
		}
	}
}
