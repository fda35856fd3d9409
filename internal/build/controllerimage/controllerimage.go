// Package controllerimage builds the upgrade controller's own container
// image with go-containerregistry (no Docker daemon): one image per arch
// around a static upgrade-controller binary, and a multi-arch index over
// them.
//
// Each image has one gzip layer:
//
//	/usr/bin/upgrade-controller          the binary (entrypoint)
//	/etc/passwd, /etc/group              root and nonroot (65532)
//	/etc/ssl/certs/ca-certificates.crt   the CA bundle, when given (the
//	                                     controller fetches channel URLs)
//	/home/nonroot                        owned by 65532
//	/tmp                                 1777
//
// and runs as User 65532:65532, the distroless "nonroot" convention; the
// Deployment's securityContext says the same.
//
// The image is named Reference(version) (kestrel/upgrade-controller:<tag>),
// the name the shipped Deployment is stamped with. WriteDockerArchive
// writes one arch's image in `docker save` form under that name: the form
// k3s imports from /var/lib/rancher/k3s/agent/images (as it does its own
// airgap images) and `docker load` / `ctr images import` read. The
// multi-arch index goes to registries, or to an OCI archive with
// upgradeimage.WriteArchive.
//
// Images are reproducible: entries carry Spec.Created (the Unix epoch when
// unset) and fixed owners and modes.
//
// Limits: linux only; the binary must be static (CGO off), nothing else
// (no shell, no libc) is in the image; the binary is read whole into
// memory once per image; no signing.
package controllerimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/kestrel-os/kestrel/internal/build/upgradeimage"
)

// Names in and of the image.
const (
	// Repository is the image's repository, as the Deployment names it
	// (Docker Hub normalises it to docker.io/kestrel/upgrade-controller).
	Repository = "kestrel/upgrade-controller"
	BinaryPath = "/usr/bin/upgrade-controller"
	UID        = 65532
	User       = "65532:65532"
	caPath     = "etc/ssl/certs/ca-certificates.crt"
)

// Reference is the image reference of a version: Repository:<tag>, the tag
// as upgradeimage.Tag munges it.
func Reference(version string) string { return Repository + ":" + upgradeimage.Tag(version) }

// FullReference is Reference with Docker Hub's registry spelled out, as
// containerd records an image the kubelet asks for by Reference.
func FullReference(version string) string { return "docker.io/" + Reference(version) }

// Binary is one arch's upgrade-controller binary on the build host.
type Binary struct {
	Arch    string // GOARCH: amd64, arm64, arm
	Variant string // default "v7" for arm
	Path    string
}

// Platform is the binary's OCI platform.
func (b Binary) Platform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: b.Arch, Variant: b.Variant}
	if p.Variant == "" && b.Arch == "arm" {
		p.Variant = "v7"
	}
	return p
}

// Spec is what the images are built from.
type Spec struct {
	Version  string
	Created  time.Time // mtime of every entry and image creation time
	CABundle string    // host path of a PEM CA bundle; empty for none
	Binaries []Binary
	// Uncompressed stores the layer as a plain tar (for an archive that
	// goes into the squashfs, which compresses it better than gzip).
	Uncompressed bool
}

// Image builds one arch's image.
func Image(s Spec, b Binary) (v1.Image, error) {
	if s.Version == "" {
		return nil, fmt.Errorf("controller image: version is empty")
	}
	switch b.Arch {
	case "amd64", "arm64", "arm":
	default:
		return nil, fmt.Errorf("controller image: unknown arch %q (amd64, arm64, arm)", b.Arch)
	}
	created := s.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	layerTar, err := rootTar(created, b.Path, s.CABundle)
	if err != nil {
		return nil, fmt.Errorf("controller image %s: %w", b.Arch, err)
	}
	var layer v1.Layer = static.NewLayer(layerTar, types.OCIUncompressedLayer)
	if !s.Uncompressed {
		layer, err = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
		if err != nil {
			return nil, fmt.Errorf("controller image %s: layer: %w", b.Arch, err)
		}
	}
	p := b.Platform()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OS:           p.OS,
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Entrypoint: []string{BinaryPath},
			User:       User,
			WorkingDir: "/home/nonroot",
			Env:        []string{"PATH=/usr/bin", "HOME=/home/nonroot"},
			Labels: map[string]string{
				upgradeimage.AnnotationVersion: s.Version,
				upgradeimage.AnnotationTitle:   "Kestrel upgrade controller " + s.Version,
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("controller image %s: config: %w", b.Arch, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "kestrel-build: upgrade-controller " + s.Version}})
	if err != nil {
		return nil, fmt.Errorf("controller image %s: layer: %w", b.Arch, err)
	}
	return mutate.Annotations(img, map[string]string{upgradeimage.AnnotationVersion: s.Version}).(v1.Image), nil
}

// Build builds every arch's image and the index over them; the images are
// returned in s.Binaries order.
func Build(s Spec) (v1.ImageIndex, []v1.Image, error) {
	if len(s.Binaries) == 0 {
		return nil, nil, fmt.Errorf("controller image: no binaries")
	}
	seen := map[string]bool{}
	var adds []mutate.IndexAddendum
	var imgs []v1.Image
	for _, b := range s.Binaries {
		p := b.Platform()
		key := p.Architecture + "/" + p.Variant
		if seen[key] {
			return nil, nil, fmt.Errorf("controller image: arch %s given twice", key)
		}
		seen[key] = true
		img, err := Image(s, b)
		if err != nil {
			return nil, nil, err
		}
		imgs = append(imgs, img)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	idx = mutate.Annotations(idx, map[string]string{upgradeimage.AnnotationVersion: s.Version}).(v1.ImageIndex)
	return idx, imgs, nil
}

// WriteDockerArchive writes img in `docker save` form to path, tagged ref
// (e.g. FullReference(version)), through a temporary file renamed into
// place.
func WriteDockerArchive(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("controller image: reference %q: %w", ref, err)
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("controller image: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("controller image: %w", err)
	}
	return nil
}

// rootTar is the layer's uncompressed tar.
func rootTar(mtime time.Time, binary, caBundle string) ([]byte, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return nil, fmt.Errorf("binary %s is not an ELF executable", binary)
	}
	var ca []byte
	if caBundle != "" {
		if ca, err = os.ReadFile(caBundle); err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
	}
	type entry struct {
		name string
		mode int64
		uid  int
		data []byte // nil: directory
	}
	entries := []entry{
		{"etc/", 0o755, 0, nil},
		{"etc/group", 0o644, 0, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{"etc/passwd", 0o644, 0, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
	}
	if ca != nil {
		entries = append(entries, entry{"etc/ssl/", 0o755, 0, nil}, entry{"etc/ssl/certs/", 0o755, 0, nil}, entry{caPath, 0o644, 0, ca})
	}
	entries = append(entries,
		entry{"home/", 0o755, 0, nil},
		entry{"home/nonroot/", 0o700, UID, nil},
		entry{"tmp/", 0o1777, 0, nil},
		entry{"usr/", 0o755, 0, nil},
		entry{"usr/bin/", 0o755, 0, nil},
		entry{BinaryPath[1:], 0o755, 0, bin},
	)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: mtime, Format: tar.FormatPAX, Typeflag: tar.TypeDir}
		if e.data != nil {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
