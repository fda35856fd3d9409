package pipeline

// The container images of a release, built from what Image left in the
// output directory (upgrade image) or from the repository's Go packages
// (controller image):
//
//	kestrel-upgrade-<v>.oci.tar                       upgrade image, every arch built, OCI archive
//	kestrel-upgrade-controller-<v>.oci.tar            controller image, every arch, OCI archive
//	kestrel-upgrade-controller-<v>-<arch>.tar         controller image of one arch, docker-archive
//	                                                  (k3s airgap import: /var/lib/rancher/k3s/agent/images)
//
// Image also puts the controller image of its target into a rootfs that
// carries k3s (shipControllerImage), so a server needs no registry for it.
//
// Every archive is read back from disk and checked before the build says
// it is done; a push sends the images read back, not the ones in memory.

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocilayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kestrel-os/kestrel/internal/build/controllerimage"
	"github.com/kestrel-os/kestrel/internal/build/upgradeimage"
	"github.com/kestrel-os/kestrel/internal/k3s/manifests"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// UpgradeOptions are the inputs of the upgrade image.
type UpgradeOptions struct {
	// OutDir holds the image builds (kestrel-<v>-<target>.json and the
	// parts it lists) and receives the archive.
	OutDir  string
	Version string
	// Targets restricts the image to these targets; empty: every target
	// built for Version in OutDir. Two targets of one arch cannot share
	// an index (see upgradeimage).
	Targets []string
	// Time is the images' creation time and every entry's mtime.
	Time int64
	// Push, when set, is a registry reference the index is pushed to.
	Push string
	// RemoteOptions are added to the push (transport, auth).
	RemoteOptions []remote.Option
	Log           *log.Logger
}

// ImageResult is what an image build wrote.
type ImageResult struct {
	Archive string   // the OCI archive of the index
	Docker  []string // docker-archives, one per arch (controller image only)
	Digest  v1.Hash  // the index digest
	// Manifests are the upgrade image's release manifests, per arch, as
	// read back from the archive (upgrade image only).
	Manifests []upgradeimage.Manifest
	Pushed    string // reference@digest when pushed
}

// UpgradeArchiveName is the upgrade image archive's file name.
func UpgradeArchiveName(version string) string { return "kestrel-upgrade-" + version + ".oci.tar" }

// UpgradeImage builds the upgrade image of o.Version from the image
// builds in o.OutDir: per target its kernel, initrd, rootfs and the
// kestrel binary taken from that rootfs (so the entrypoint is the binary
// the release boots), checked against the build manifest's sizes and
// sha256. It writes the OCI archive, verifies it (upgradeimage.Verify on
// every arch, read back from the file) and pushes it when asked.
func UpgradeImage(ctx context.Context, o UpgradeOptions) (ImageResult, error) {
	if o.Log == nil {
		o.Log = log.New(io.Discard, "", 0)
	}
	builds, err := findBuilds(o.OutDir, o.Version, o.Targets)
	if err != nil {
		return ImageResult{}, err
	}
	work, err := os.MkdirTemp(o.OutDir, ".upgrade-image-")
	if err != nil {
		return ImageResult{}, fmt.Errorf("upgrade image: %w", err)
	}
	defer os.RemoveAll(work)

	rel := upgradeimage.Release{Version: o.Version, Created: time.Unix(o.Time, 0)}
	byArch := map[string]string{}
	for _, b := range builds {
		if other, dup := byArch[b.Arch]; dup {
			return ImageResult{}, fmt.Errorf("upgrade image: targets %s and %s are both %s and cannot share an index: choose one (-targets)", other, b.Target, b.Arch)
		}
		byArch[b.Arch] = b.Target
	}
	for _, b := range builds {
		parts := map[string]Artifact{}
		for _, a := range b.Artifacts {
			parts[a.Kind] = a
		}
		for _, kind := range []string{"kernel", "initrd", "rootfs", "release"} {
			if _, ok := parts[kind]; !ok {
				hint := ""
				if kind == "release" {
					hint = " (no signed release manifest: build the image with -sign-key)"
				}
				return ImageResult{}, fmt.Errorf("upgrade image: %s lists no %s%s", Prefix(b.Version, b.Target)+".json", kind, hint)
			}
		}
		p := func(kind string) string { return filepath.Join(o.OutDir, parts[kind].Path) }
		kestrel := filepath.Join(work, b.Target, "kestrel")
		if err := extractFile(p("rootfs"), layout.KestrelBin, kestrel); err != nil {
			return ImageResult{}, fmt.Errorf("upgrade image %s: %w", b.Target, err)
		}
		a := upgradeimage.Artifacts{Arch: b.Arch, Kernel: p("kernel"), Initrd: p("initrd"), Rootfs: p("rootfs"), Release: p("release"), Kestrel: kestrel}
		if b.Target != b.Arch {
			a.Board = b.Target
		}
		rel.Arches = append(rel.Arches, a)
	}
	idx, ms, err := upgradeimage.Build(rel)
	if err != nil {
		return ImageResult{}, err
	}
	for i, m := range ms { // the parts did not change since the build
		if err := matchBuild(m, builds[i]); err != nil {
			return ImageResult{}, err
		}
	}
	o.Log.Printf("upgrade image: %d arches hashed", len(ms))

	res := ImageResult{Archive: filepath.Join(o.OutDir, UpgradeArchiveName(o.Version))}
	if err := upgradeimage.WriteArchive(res.Archive, upgradeimage.Tag(o.Version), idx); err != nil {
		return ImageResult{}, err
	}
	back, err := readArchive(res.Archive, filepath.Join(work, "verify"))
	if err != nil {
		return ImageResult{}, err
	}
	res.Digest, res.Manifests, err = verifyUpgradeIndex(back, idx)
	if err != nil {
		return ImageResult{}, fmt.Errorf("upgrade image: %s: %w", res.Archive, err)
	}
	for i, m := range res.Manifests {
		if err := matchBuild(m, builds[i]); err != nil {
			return ImageResult{}, fmt.Errorf("upgrade image: %s: %w", res.Archive, err)
		}
	}
	o.Log.Printf("upgrade image: wrote and verified %s (%s)", res.Archive, res.Digest)
	if o.Push != "" {
		if res.Pushed, err = push(ctx, o.Push, back, o.RemoteOptions); err != nil {
			return ImageResult{}, err
		}
		o.Log.Printf("upgrade image: pushed %s", res.Pushed)
	}
	return res, nil
}

// ControllerOptions are the inputs of the controller image.
type ControllerOptions struct {
	OutDir  string
	Version string
	// Arches are the GOARCHes to build for (arm means GOARM=7).
	Arches []string
	// Package is the Go package of the controller ("./cmd/upgrade-controller").
	Package  string
	CABundle string
	// CacheDir holds the build's scratch directory.
	CacheDir      string
	Time          int64
	Push          string
	RemoteOptions []remote.Option
	Log           *log.Logger
}

// ControllerArchiveName is the controller image's OCI archive name, and
// ControllerDockerName its per-arch docker-archive's.
func ControllerArchiveName(version string) string {
	return "kestrel-upgrade-controller-" + version + ".oci.tar"
}
func ControllerDockerName(version, arch string) string {
	return "kestrel-upgrade-controller-" + version + "-" + arch + ".tar"
}

// ControllerImage builds the upgrade controller (static, CGO off) for
// every arch, its images and index (internal/build/controllerimage), and writes the
// OCI archive and one docker-archive per arch named
// controllerimage.FullReference(version), the reference the shipped
// Deployment uses. Both are read back and compared before it returns.
func ControllerImage(ctx context.Context, o ControllerOptions) (ImageResult, error) {
	if o.Log == nil {
		o.Log = log.New(io.Discard, "", 0)
	}
	if len(o.Arches) == 0 {
		return ImageResult{}, fmt.Errorf("controller image: no arches")
	}
	if err := os.MkdirAll(filepath.Join(o.CacheDir, "build"), 0o755); err != nil {
		return ImageResult{}, fmt.Errorf("controller image: %w", err)
	}
	work, err := os.MkdirTemp(filepath.Join(o.CacheDir, "build"), "controller-")
	if err != nil {
		return ImageResult{}, fmt.Errorf("controller image: %w", err)
	}
	defer os.RemoveAll(work)
	spec := controllerimage.Spec{Version: o.Version, Created: time.Unix(o.Time, 0), CABundle: o.CABundle}
	for _, arch := range o.Arches {
		goarm := ""
		if arch == "arm" {
			goarm = "7"
		}
		bin := filepath.Join(work, arch, "upgrade-controller")
		if err := goBuild(o.Package, bin, o.Version, arch, goarm); err != nil {
			return ImageResult{}, fmt.Errorf("controller image: %w", err)
		}
		spec.Binaries = append(spec.Binaries, controllerimage.Binary{Arch: arch, Path: bin})
		o.Log.Printf("controller image: %s binary built", arch)
	}
	idx, imgs, err := controllerimage.Build(spec)
	if err != nil {
		return ImageResult{}, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return ImageResult{}, fmt.Errorf("controller image: %w", err)
	}
	res := ImageResult{Archive: filepath.Join(o.OutDir, ControllerArchiveName(o.Version))}
	if err := upgradeimage.WriteArchive(res.Archive, upgradeimage.Tag(o.Version), idx); err != nil {
		return ImageResult{}, fmt.Errorf("controller image: %w", err)
	}
	back, err := readArchive(res.Archive, filepath.Join(work, "verify"))
	if err != nil {
		return ImageResult{}, fmt.Errorf("controller image: %w", err)
	}
	want, err := idx.Digest()
	if err != nil {
		return ImageResult{}, fmt.Errorf("controller image: %w", err)
	}
	if res.Digest, err = back.Digest(); err != nil || res.Digest != want {
		return ImageResult{}, fmt.Errorf("controller image: %s reads back as index %v (%v), built %s", res.Archive, res.Digest, err, want)
	}
	ref := controllerimage.FullReference(o.Version)
	for i, img := range imgs {
		p := filepath.Join(o.OutDir, ControllerDockerName(o.Version, o.Arches[i]))
		if err := controllerimage.WriteDockerArchive(p, ref, img); err != nil {
			return ImageResult{}, err
		}
		if err := checkDockerArchive(p, ref, img); err != nil {
			return ImageResult{}, fmt.Errorf("controller image: %s: %w", p, err)
		}
		res.Docker = append(res.Docker, p)
	}
	o.Log.Printf("controller image %s: wrote and verified %s and %d docker-archives", ref, res.Archive, len(res.Docker))
	if o.Push != "" {
		if res.Pushed, err = push(ctx, o.Push, back, o.RemoteOptions); err != nil {
			return ImageResult{}, fmt.Errorf("controller image: %w", err)
		}
		o.Log.Printf("controller image: pushed %s", res.Pushed)
	}
	return res, nil
}

// ControllerPackage is the controller's Go package, built for the copy of
// its image that a rootfs with k3s carries.
const ControllerPackage = "github.com/kestrel-os/kestrel/cmd/upgrade-controller"

// shipControllerImage puts the controller image of the target's arch into
// the rootfs tree at rootDir as a docker-archive named
// controllerimage.FullReference(Version), its layer uncompressed (the
// squashfs compresses it); stage 2 hands it to k3s (internal/k3s/manifests).
func (o Options) shipControllerImage(rootDir string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(rootDir), "controller-")
	if err != nil {
		return fmt.Errorf("controller image: %w", err)
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "upgrade-controller")
	if err := goBuild(ControllerPackage, bin, o.Version, o.Image.Arch, o.Image.GOARM); err != nil {
		return fmt.Errorf("controller image: %w", err)
	}
	b := controllerimage.Binary{Arch: o.Image.Arch, Path: bin}
	if o.Image.GOARM != "" {
		b.Variant = "v" + o.Image.GOARM
	}
	_, imgs, err := controllerimage.Build(controllerimage.Spec{
		Version: o.Version, Created: time.Unix(o.Time, 0), CABundle: o.CABundle, Uncompressed: true,
		Binaries: []controllerimage.Binary{b},
	})
	if err != nil {
		return err
	}
	dst := filepath.Join(rootDir, manifests.ShippedImageDir, manifests.ImageName)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("controller image: %w", err)
	}
	ref := controllerimage.FullReference(o.Version)
	if err := controllerimage.WriteDockerArchive(dst, ref, imgs[0]); err != nil {
		return err
	}
	if err := checkDockerArchive(dst, ref, imgs[0]); err != nil {
		return fmt.Errorf("controller image: %s: %w", dst, err)
	}
	// The node copies it to k3s without hashing it at every boot.
	if err := manifests.WriteSum(dst); err != nil {
		return fmt.Errorf("controller image: %w", err)
	}
	return nil
}

// findBuilds reads the build manifests of version in dir, in target order.
func findBuilds(dir, version string, targets []string) ([]Manifest, error) {
	paths, err := filepath.Glob(filepath.Join(dir, Prefix(version, "*")+".json"))
	if err != nil {
		return nil, fmt.Errorf("upgrade image: %w", err)
	}
	want := map[string]bool{}
	for _, t := range targets {
		want[t] = true
	}
	var out []Manifest
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("upgrade image: %w", err)
		}
		var m Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("upgrade image: %s: %w", p, err)
		}
		// kestrel-1.0-*.json also matches version 1.0-rc1's builds.
		if m.Version != version || filepath.Base(p) != Prefix(m.Version, m.Target)+".json" {
			continue
		}
		if len(targets) > 0 && !want[m.Target] {
			continue
		}
		delete(want, m.Target)
		out = append(out, m)
	}
	if len(want) > 0 {
		var missing []string
		for t := range want {
			missing = append(missing, t)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("upgrade image: no build of %s for %s in %s (run kestrel-build image first)", version, strings.Join(missing, ", "), dir)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("upgrade image: no build of version %s in %s (run kestrel-build image -version %s first)", version, dir, version)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

// matchBuild checks an upgrade image manifest's parts against the build's.
func matchBuild(m upgradeimage.Manifest, b Manifest) error {
	kinds := map[string]string{upgradeimage.KernelName: "kernel", upgradeimage.InitrdName: "initrd", upgradeimage.RootfsName: "rootfs", upgradeimage.ReleaseName: "release"}
	for _, f := range m.Files {
		kind, ok := kinds[f.Name]
		if !ok {
			continue
		}
		for _, a := range b.Artifacts {
			if a.Kind == kind && (a.Size != f.Size || a.SHA256 != f.SHA256) {
				return fmt.Errorf("upgrade image %s: %s is %d bytes sha256 %s, the build recorded %d bytes sha256 %s (rebuilt or changed since?)",
					b.Target, a.Path, f.Size, f.SHA256, a.Size, a.SHA256)
			}
		}
	}
	return nil
}

// verifyUpgradeIndex checks an index read back against the one built: the
// same digest, and every arch's release layer whole (upgradeimage.Verify).
func verifyUpgradeIndex(back, built v1.ImageIndex) (v1.Hash, []upgradeimage.Manifest, error) {
	want, err := built.Digest()
	if err != nil {
		return v1.Hash{}, nil, err
	}
	got, err := back.Digest()
	if err != nil || got != want {
		return v1.Hash{}, nil, fmt.Errorf("index reads back as %v (%v), built %s", got, err, want)
	}
	im, err := back.IndexManifest()
	if err != nil {
		return v1.Hash{}, nil, err
	}
	var ms []upgradeimage.Manifest
	for _, d := range im.Manifests {
		img, err := back.Image(d.Digest)
		if err != nil {
			return v1.Hash{}, nil, err
		}
		m, err := upgradeimage.Verify(img, nil)
		if err != nil {
			return v1.Hash{}, nil, err
		}
		ms = append(ms, m)
	}
	return got, ms, nil
}

// checkDockerArchive reads a docker-archive back: one image, tagged ref,
// with img's config and layers.
func checkDockerArchive(p, ref string, img v1.Image) error {
	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
	if err != nil {
		return err
	}
	if len(mf) != 1 || len(mf[0].RepoTags) != 1 || mf[0].RepoTags[0] != ref {
		return fmt.Errorf("manifest.json does not tag exactly %s", ref)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	back, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		return err
	}
	want, err := img.ConfigName()
	if err != nil {
		return err
	}
	got, err := back.ConfigName()
	if err != nil || got != want {
		return fmt.Errorf("config reads back as %v (%v), built %s", got, err, want)
	}
	layers, err := back.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers { // reading each layer checks its digest
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readArchive unpacks an OCI archive written by upgradeimage.WriteArchive
// into dir and returns the one index it names.
func readArchive(archive, dir string) (v1.ImageIndex, error) {
	if err := untar(archive, dir); err != nil {
		return nil, fmt.Errorf("read back %s: %w", archive, err)
	}
	outer, err := ocilayout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", archive, err)
	}
	im, err := outer.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", archive, err)
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("read back %s: index.json names %d entries, want 1", archive, len(im.Manifests))
	}
	idx, err := outer.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", archive, err)
	}
	return idx, nil
}

func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel := path.Clean(h.Name)
		if rel == ".." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.Create(dst)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %c", h.Name, h.Typeflag)
		}
	}
}

func push(ctx context.Context, ref string, idx v1.ImageIndex, opts []remote.Option) (string, error) {
	d, err := upgradeimage.Push(ctx, ref, idx, opts...)
	if err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}

// extractFile copies file from a squashfs image to out with unsquashfs.
func extractFile(squashfs, file, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	defer f.Close()
	var stderr strings.Builder
	cmd := exec.Command("unsquashfs", "-cat", squashfs, file)
	cmd.Stdout, cmd.Stderr = f, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("unsquashfs -cat %s %s: %w: %s", squashfs, file, err, strings.TrimSpace(stderr.String()))
	}
	return f.Close()
}

// goBuild builds Go package src for linux/arch as a static binary (CGO
// off, trimmed paths, stripped, version stamped) into out.
func goBuild(src, out, version, arch, goarm string) error {
	ldflags := "-s -w -X github.com/kestrel-os/kestrel/internal/buildinfo.Version=" + version
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+goarm)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", src, arch, err, msg)
	}
	return nil
}
