// Package upgradeimage builds the Kestrel upgrade image: one OCI image per
// arch carrying a release's artifacts, and a multi-arch index over them,
// written as an OCI layout (directory or tar archive) or pushed to a
// registry. It uses go-containerregistry; no Docker daemon is involved.
//
// Each per-arch image has two layers:
//
//	layer 1 (gzip):          /usr/bin/kestrel (the arch's kestrel binary),
//	                         empty /host and /tmp
//	layer 2 (uncompressed):  /kestrel/release/manifest.json
//	                         /kestrel/release/vmlinuz
//	                         /kestrel/release/initrd
//	                         /kestrel/release/rootfs
//	                         /kestrel/release/release.json
//	                         /kestrel/release/bundle.kestrel  (optional)
//
// /kestrel/release is a release directory as internal/release reads it
// (release.OpenDir): release.json is the signed release manifest, rootfs
// the root partition image (squashfs + dm-verity tree). manifest.json is
// this image's own unsigned list of its files, for Verify.
//
// The release layer is stored uncompressed: kernel, initramfs and squashfs
// are already compressed, and gzip would only cost build and pull time.
// manifest.json is the first entry of that layer, so a reader can verify
// each artifact while streaming it (Verify does). bundle.kestrel is the
// reserved name for the signed bundle of the node-side upgrade; the
// manifest lists it like the other files when it is given.
//
// The entrypoint is `kestrel upgrade --from /kestrel/release --host /host`:
// the upgrade Job mounts the node's root at /host and the node-side upgrade
// (a later issue) reads the release from /kestrel/release.
//
// Images are reproducible: entries are root-owned with fixed modes and the
// mtime of Release.Created (the Unix epoch when unset), so the same inputs
// give the same digests.
//
// Limits: linux only; one image per (arch, variant), so per-board releases
// of the same arch need separate tags; the release layer is produced by
// streaming the input files twice (once to hash, once to write), so the
// files must not change while Build's result is in use (a change is
// detected and fails the write); no image signing (cosign) here.
package upgradeimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kestrel-os/kestrel/internal/release"
)

// Paths inside the image.
const (
	ReleaseDir   = "/kestrel/release"
	BinaryPath   = "/usr/bin/kestrel"
	HostMount    = "/host"
	KernelName   = release.PartKernel
	InitrdName   = release.PartInitrd
	RootfsName   = release.PartRootfs
	ReleaseName  = release.ManifestFile
	BundleName   = "bundle.kestrel"
	ManifestName = "manifest.json"
)

// Entrypoint is the image's command.
var Entrypoint = []string{BinaryPath, "upgrade", "--from", ReleaseDir, "--host", HostMount}

// Labels (image config) and annotations (manifest and index descriptors).
const (
	// LabelUpgradeImage marks a Kestrel upgrade image; the value is the
	// layout version (ManifestFormat). The upgrade controller uses it to
	// tell Kestrel upgrades from other Plans.
	LabelUpgradeImage = "kestrel.io/upgrade-image"
	LabelVersion      = "kestrel.io/version"
	LabelArch         = "kestrel.io/arch"
	LabelBoard        = "kestrel.io/board"
	AnnotationVersion = "org.opencontainers.image.version"
	AnnotationTitle   = "org.opencontainers.image.title"
	AnnotationCreated = "org.opencontainers.image.created"
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// ManifestFormat is the version of manifest.json's format and of this
// image layout. 2: rootfs is the verity partition image, release.json the
// signed release manifest.
const ManifestFormat = 2

// Artifacts are one arch's release files on the build host.
type Artifacts struct {
	Arch    string // GOARCH: amd64, arm64, arm
	Variant string // platform variant; default "v7" for arm, none otherwise
	Board   string // optional, recorded in manifest.json and labels
	Kernel  string // path of the kernel image
	Initrd  string // path of the initramfs
	Rootfs  string // path of the rootfs partition image (squashfs + verity tree)
	Release string // path of the signed release manifest (internal/release)
	Kestrel string // path of the kestrel binary for Arch
	Bundle  string // optional: path of the signed bundle
}

// Release is a version with its per-arch artifacts.
type Release struct {
	Version string
	Created time.Time // mtime of every entry and image creation time
	Arches  []Artifacts
}

// Manifest is /kestrel/release/manifest.json.
type Manifest struct {
	Format  int         `json:"format"`
	Version string      `json:"version"`
	Arch    string      `json:"arch"`
	Variant string      `json:"variant,omitempty"`
	Board   string      `json:"board,omitempty"`
	Files   []FileEntry `json:"files"`
}

// FileEntry is one artifact in the manifest.
type FileEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// File returns the entry called name.
func (m Manifest) File(name string) (FileEntry, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return FileEntry{}, false
}

// Platform is the OCI platform an Artifacts is built for.
func (a Artifacts) Platform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: a.Arch, Variant: a.variant()}
}

func (a Artifacts) variant() string {
	if a.Variant == "" && a.Arch == "arm" {
		return "v7"
	}
	return a.Variant
}

// Image builds one arch's image. It hashes every artifact (the returned
// Manifest) but streams them into the layer only when the image is written.
func Image(version string, created time.Time, a Artifacts) (v1.Image, Manifest, error) {
	if version == "" {
		return nil, Manifest{}, fmt.Errorf("upgrade image: version is empty")
	}
	switch a.Arch {
	case "amd64", "arm64", "arm":
	default:
		return nil, Manifest{}, fmt.Errorf("upgrade image: unknown arch %q (amd64, arm64, arm)", a.Arch)
	}
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	m := Manifest{Format: ManifestFormat, Version: version, Arch: a.Arch, Variant: a.variant(), Board: a.Board}
	files := []struct{ name, path string }{{KernelName, a.Kernel}, {InitrdName, a.Initrd}, {RootfsName, a.Rootfs}, {ReleaseName, a.Release}}
	if a.Bundle != "" {
		files = append(files, struct{ name, path string }{BundleName, a.Bundle})
	}
	var sources []source
	for _, f := range files {
		if f.path == "" {
			return nil, Manifest{}, fmt.Errorf("upgrade image %s: no %s given", a.Arch, f.name)
		}
		size, sum, err := hashFile(f.path)
		if err != nil {
			return nil, Manifest{}, fmt.Errorf("upgrade image %s: %s: %w", a.Arch, f.name, err)
		}
		m.Files = append(m.Files, FileEntry{Name: f.name, Size: size, SHA256: sum})
		sources = append(sources, source{name: ReleaseDir[1:] + "/" + f.name, path: f.path, size: size, sha256: sum, mode: 0o644})
	}
	mjson, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("upgrade image: manifest: %w", err)
	}
	mjson = append(mjson, '\n')

	if a.Kestrel == "" {
		return nil, Manifest{}, fmt.Errorf("upgrade image %s: no kestrel binary given", a.Arch)
	}
	bsize, bsum, err := hashFile(a.Kestrel)
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("upgrade image %s: kestrel binary: %w", a.Arch, err)
	}

	binLayer, err := tarball.LayerFromOpener(tarOpener(created, []string{"usr/", "usr/bin/", "host/", "tmp/"},
		nil, []source{{name: BinaryPath[1:], path: a.Kestrel, size: bsize, sha256: bsum, mode: 0o755}}),
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("upgrade image %s: kestrel layer: %w", a.Arch, err)
	}
	relLayer := &streamLayer{open: tarOpener(created, []string{"kestrel/", "kestrel/release/"},
		&inline{name: ReleaseDir[1:] + "/" + ManifestName, data: mjson}, sources)}

	labels := map[string]string{
		LabelUpgradeImage: fmt.Sprint(ManifestFormat),
		LabelVersion:      version,
		LabelArch:         a.Arch,
		AnnotationVersion: version,
		AnnotationTitle:   "Kestrel upgrade " + version,
	}
	if a.Board != "" {
		labels[LabelBoard] = a.Board
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: a.Arch,
		Variant:      a.variant(),
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Entrypoint: Entrypoint,
			Env:        []string{"PATH=/usr/bin"},
			Labels:     labels,
		},
	})
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("upgrade image %s: config: %w", a.Arch, err)
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: binLayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "kestrel-build: kestrel binary"}},
		mutate.Addendum{Layer: relLayer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "kestrel-build: release " + version}},
	)
	if err != nil {
		return nil, Manifest{}, fmt.Errorf("upgrade image %s: layers: %w", a.Arch, err)
	}
	img = mutate.Annotations(img, map[string]string{
		AnnotationVersion: version,
		LabelUpgradeImage: fmt.Sprint(ManifestFormat),
	}).(v1.Image)
	return img, m, nil
}

// Build builds every arch's image and the multi-arch index over them. The
// manifests are returned in r.Arches order.
func Build(r Release) (v1.ImageIndex, []Manifest, error) {
	if len(r.Arches) == 0 {
		return nil, nil, fmt.Errorf("upgrade image: no arches")
	}
	seen := map[string]bool{}
	var adds []mutate.IndexAddendum
	var ms []Manifest
	for _, a := range r.Arches {
		p := a.Platform()
		key := p.Architecture + "/" + p.Variant
		if seen[key] {
			return nil, nil, fmt.Errorf("upgrade image: arch %s given twice", key)
		}
		seen[key] = true
		img, m, err := Image(r.Version, r.Created, a)
		if err != nil {
			return nil, nil, err
		}
		ms = append(ms, m)
		ann := map[string]string{AnnotationVersion: r.Version, LabelArch: a.Arch}
		if a.Board != "" {
			ann[LabelBoard] = a.Board
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p, Annotations: ann}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	created := r.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	idx = mutate.Annotations(idx, map[string]string{
		AnnotationVersion: r.Version,
		AnnotationCreated: created.UTC().Format(time.RFC3339),
		LabelUpgradeImage: fmt.Sprint(ManifestFormat),
	}).(v1.ImageIndex)
	return idx, ms, nil
}

// Repository is the recommended last path element of the image's
// repository: the upgrade controller recognises a Plan whose upgrade image
// lives in a repository of this name as a Kestrel upgrade.
const Repository = "kestrel-upgrade"

// Tag is the image tag for a version: a tag allows [A-Za-z0-9_.-] only (at
// most 128, not starting with '.' or '-'), so "+" of build metadata and any
// other character become "-", as system-upgrade-controller munges versions.
func Tag(version string) string {
	t := []byte(version)
	for i, c := range t {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			t[i] = '-'
		}
	}
	s := strings.TrimLeft(string(t), ".-")
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// Push writes the index and its images to ref (a tag or digest reference,
// e.g. registry.example.net/kestrel/upgrade:v1.2.0) and returns the index
// digest. Credentials come from the default keychain (docker config) unless
// opts say otherwise; loopback registries are spoken to over plain HTTP.
func Push(ctx context.Context, ref string, idx v1.ImageIndex, opts ...remote.Option) (v1.Hash, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("upgrade image: reference %q: %w", ref, err)
	}
	all := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(r, idx, all...); err != nil {
		return v1.Hash{}, fmt.Errorf("upgrade image: push %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("upgrade image: digest: %w", err)
	}
	return d, nil
}

// source is a host file streamed into a layer, verified while streamed.
type source struct {
	name   string // path in the layer, without leading slash
	path   string
	size   int64
	sha256 string
	mode   int64
}

type inline struct {
	name string
	data []byte
}

// tarOpener returns an Opener producing the same tar stream each call:
// the dirs, then first (if any), then the sources. A source whose content
// no longer matches its recorded size and sha256 fails the stream.
func tarOpener(mtime time.Time, dirs []string, first *inline, sources []source) tarball.Opener {
	return func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(writeTar(pw, mtime, dirs, first, sources))
		}()
		return pr, nil
	}
}

func writeTar(w io.Writer, mtime time.Time, dirs []string, first *inline, sources []source) error {
	tw := tar.NewWriter(w)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, Size: size, ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
	}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(hdr(d, tar.TypeDir, mode, 0)); err != nil {
			return err
		}
	}
	if first != nil {
		if err := tw.WriteHeader(hdr(first.name, tar.TypeReg, 0o644, int64(len(first.data)))); err != nil {
			return err
		}
		if _, err := tw.Write(first.data); err != nil {
			return err
		}
	}
	for _, s := range sources {
		if err := tw.WriteHeader(hdr(s.name, tar.TypeReg, s.mode, s.size)); err != nil {
			return err
		}
		f, err := os.Open(s.path)
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(f, s.size+1))
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.path, err)
		}
		if n != s.size || hex.EncodeToString(h.Sum(nil)) != s.sha256 {
			return fmt.Errorf("%s changed while the image was being written (was %d bytes, sha256 %s)", s.path, s.size, s.sha256)
		}
	}
	return tw.Close()
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	if !fi.Mode().IsRegular() {
		return 0, "", fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
