package controllerimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeBinary writes an ELF-looking file; the image never runs it.
func fakeBinary(t *testing.T, arch string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "upgrade-controller-"+arch)
	if err := os.WriteFile(p, []byte("\x7fELF controller for "+arch), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testSpec(t *testing.T) Spec {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Spec{Version: "1.2.0+rc1", Created: time.Unix(1700000000, 0), CABundle: ca, Binaries: []Binary{
		{Arch: "amd64", Path: fakeBinary(t, "amd64")},
		{Arch: "arm", Path: fakeBinary(t, "arm")},
	}}
}

// files returns the layer's entries by name.
func files(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		h.Linkname = string(data) // content, for the checks below
		out[h.Name] = h
	}
}

func TestBuild(t *testing.T) {
	s := testSpec(t)
	idx, imgs, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 2 {
		t.Fatalf("index: %v, %v", im, err)
	}
	if p := im.Manifests[1].Platform; p == nil || p.Architecture != "arm" || p.Variant != "v7" || p.OS != "linux" {
		t.Errorf("arm platform %+v", p)
	}
	for i, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != BinaryPath || cf.Architecture != s.Binaries[i].Arch {
			t.Errorf("%s config %+v", s.Binaries[i].Arch, cf.Config)
		}
		fs := files(t, img)
		bin, _ := os.ReadFile(s.Binaries[i].Path)
		for _, c := range []struct {
			name string
			mode int64
			uid  int
			data string
		}{
			{"usr/bin/upgrade-controller", 0o755, 0, string(bin)},
			{"etc/passwd", 0o644, 0, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
			{"etc/ssl/certs/ca-certificates.crt", 0o644, 0, "-----BEGIN CERTIFICATE-----\n"},
			{"home/nonroot/", 0o700, 65532, ""},
			{"tmp/", 0o1777, 0, ""},
		} {
			h := fs[c.name]
			if h == nil || h.Mode != c.mode || h.Uid != c.uid || h.Linkname != c.data || !h.ModTime.Equal(s.Created) {
				t.Errorf("%s: %s = %+v", s.Binaries[i].Arch, c.name, h)
			}
		}
	}
	// Reproducible.
	idx2, _, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := idx2.Digest()
	if d1 != d2 {
		t.Errorf("two builds differ: %s %s", d1, d2)
	}
}

func TestBuildErrors(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	bin := fakeBinary(t, "amd64")
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no binaries", Spec{Version: "1"}, "no binaries"},
		{"no version", Spec{Binaries: []Binary{{Arch: "amd64", Path: bin}}}, "version is empty"},
		{"unknown arch", Spec{Version: "1", Binaries: []Binary{{Arch: "riscv64", Path: bin}}}, `unknown arch "riscv64"`},
		{"twice", Spec{Version: "1", Binaries: []Binary{{Arch: "arm", Path: bin}, {Arch: "arm", Variant: "v7", Path: bin}}}, "arm/v7 given twice"},
		{"missing binary", Spec{Version: "1", Binaries: []Binary{{Arch: "amd64", Path: "/nonexistent"}}}, "/nonexistent"},
		{"not a binary", Spec{Version: "1", Binaries: []Binary{{Arch: "amd64", Path: notELF}}}, "not an ELF"},
		{"missing CA bundle", Spec{Version: "1", CABundle: "/nonexistent.crt", Binaries: []Binary{{Arch: "amd64", Path: bin}}}, "CA bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Build(tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// The docker archive names the image as containerd (k3s) records it and
// reads back with the same config and layer.
func TestWriteDockerArchive(t *testing.T) {
	s := testSpec(t)
	_, imgs, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "controller.tar")
	ref := FullReference(s.Version)
	if ref != "docker.io/kestrel/upgrade-controller:1.2.0-rc1" {
		t.Errorf("FullReference = %s", ref)
	}
	if err := WriteDockerArchive(path, ref, imgs[0]); err != nil {
		t.Fatal(err)
	}
	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(mf) != 1 || len(mf[0].RepoTags) != 1 || mf[0].RepoTags[0] != ref {
		b, _ := json.Marshal(mf)
		t.Fatalf("manifest.json %s", b)
	}
	tag, _ := name.NewTag(ref)
	back, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := imgs[0].ConfigName()
	if c2, err := back.ConfigName(); err != nil || c1 != c2 {
		t.Errorf("config %s, read back %s (%v)", c1, c2, err)
	}
	if h := files(t, back)["usr/bin/upgrade-controller"]; h == nil || h.Linkname != "\x7fELF controller for amd64" {
		t.Errorf("binary read back: %+v", h)
	}
	// Uncompressed: the same config and files, a plain tar layer.
	s.Uncompressed = true
	_, plain, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if c3, _ := plain[0].ConfigName(); c3 != c1 {
		t.Errorf("uncompressed image has config %s, compressed %s", c3, c1)
	}
	if err := WriteDockerArchive(path, ref, plain[0]); err != nil {
		t.Fatal(err)
	}
	back, err = tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	mf, err = tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil || len(mf) != 1 || len(mf[0].Layers) != 1 || !strings.HasSuffix(mf[0].Layers[0], ".tar") {
		t.Errorf("manifest.json %+v (%v): want one plain .tar layer", mf, err)
	}
	raw, _ := os.Open(path)
	defer raw.Close()
	tr := tar.NewReader(raw)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no layer %s in the archive: %v", mf[0].Layers[0], err)
		}
		if h.Name == mf[0].Layers[0] {
			head := make([]byte, 4)
			io.ReadFull(tr, head)
			if string(head) != "etc/" {
				t.Errorf("layer in the archive is not a plain tar: % x", head)
			}
			break
		}
	}
	if h := files(t, back)["usr/bin/upgrade-controller"]; h == nil || h.Linkname != "\x7fELF controller for amd64" {
		t.Errorf("binary read back: %+v", h)
	}
	if err := WriteDockerArchive(path, "not a ref", imgs[0]); err == nil {
		t.Error("bad reference accepted")
	}
}
