package pipeline

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kestrel-os/kestrel/internal/build/controllerimage"
	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/build/upgradeimage"
	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/k3s/manifests"
	"github.com/kestrel-os/kestrel/internal/progress"
	"github.com/kestrel-os/kestrel/internal/release"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// The upgrade image of a real image build: archive verified, pushed to an
// in-process registry, pulled back by tag and by digest, the amd64 image
// selected from the index, its artifacts matching the build's checksums.
// The same build shows the controller manifests shipped in the rootfs.
func TestUpgradeImageFromRealBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("full image build skipped in -short mode")
	}
	o := testOptions(t)
	if _, err := os.Stat(o.CABundle); err != nil {
		t.Skipf("no host CA bundle: %v", err)
	}
	o.Manifests = "../../../manifests/upgrade-controller"
	build, err := Image(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/kestrel/" + upgradeimage.Repository + ":" + upgradeimage.Tag(o.Version)

	res, err := UpgradeImage(context.Background(), UpgradeOptions{OutDir: o.OutDir, Version: o.Version, Time: o.Time, Push: ref})
	if err != nil {
		t.Fatal(err)
	}
	if res.Archive != filepath.Join(o.OutDir, "kestrel-upgrade-0.0.0-test.oci.tar") || len(res.Manifests) != 1 {
		t.Fatalf("result %+v", res)
	}
	checkRelease(t, res.Manifests[0], build)

	t.Run("archive read back", func(t *testing.T) {
		idx, err := readArchive(res.Archive, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		checkUpgradeIndex(t, idx, res.Digest, build)
	})
	t.Run("release dir opens with the trusted key", func(t *testing.T) {
		idx, err := readArchive(res.Archive, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := platformImage(t, idx, "amd64").Layers()
		dir := t.TempDir()
		for _, n := range []string{upgradeimage.KernelName, upgradeimage.InitrdName, upgradeimage.RootfsName, upgradeimage.ReleaseName} {
			if err := os.WriteFile(filepath.Join(dir, n), layerFile(t, layers[1], upgradeimage.ReleaseDir[1:]+"/"+n), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		keys, err := release.LoadKeys(filepath.Dir(o.TrustedKeys[0]))
		if err != nil {
			t.Fatal(err)
		}
		r, err := release.OpenDir(dir, keys)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if m := r.Manifest(); m.Version != o.Version || m.Verity != build.Verity {
			t.Errorf("release manifest %+v, build verity %+v", m, build.Verity)
		}
	})
	t.Run("registry by tag and digest", func(t *testing.T) {
		if !strings.HasSuffix(res.Pushed, "@"+res.Digest.String()) {
			t.Errorf("pushed %s, digest %s", res.Pushed, res.Digest)
		}
		for _, r := range []string{ref, res.Pushed} {
			nr, err := name.ParseReference(r)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := remote.Index(nr)
			if err != nil {
				t.Fatal(err)
			}
			checkUpgradeIndex(t, idx, res.Digest, build)
		}
	})
	t.Run("entrypoint is the rootfs's kestrel", func(t *testing.T) {
		want, err := exec.Command("unsquashfs", "-cat", filepath.Join(o.OutDir, Prefix(o.Version, "amd64")+".squashfs"), "/usr/bin/kestrel").Output()
		if err != nil {
			t.Fatal(err)
		}
		idx, err := readArchive(res.Archive, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		img := platformImage(t, idx, "amd64")
		cf, _ := img.ConfigFile()
		if strings.Join(cf.Config.Entrypoint, " ") != strings.Join(upgradeimage.Entrypoint, " ") {
			t.Errorf("entrypoint %v", cf.Config.Entrypoint)
		}
		layers, _ := img.Layers()
		got := layerFile(t, layers[0], "usr/bin/kestrel")
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Errorf("image's kestrel (%d bytes) is not the rootfs's (%d bytes)", len(got), len(want))
		}
	})
	t.Run("rootfs ships the controller manifests", func(t *testing.T) {
		sq := filepath.Join(o.OutDir, Prefix(o.Version, "amd64")+".squashfs")
		dep, err := exec.Command("unsquashfs", "-cat", sq, manifests.ShippedDir+"/deployment.yaml").Output()
		if err != nil || !strings.Contains(string(dep), "image: "+controllerimage.Reference(o.Version)+"\n") {
			t.Errorf("deployment.yaml (%v):\n%s", err, dep)
		}
		list, _ := exec.Command("unsquashfs", "-lln", sq, manifests.ShippedDir).Output()
		for _, f := range []string{"namespace.yaml", "crd.yaml", "rbac.yaml", "deployment.yaml", "plan-kestrel.yaml"} {
			if !strings.Contains(string(list), manifests.ShippedDir+"/"+f) {
				t.Errorf("rootfs lacks %s:\n%s", f, list)
			}
		}
	})
}

// checkRelease compares an upgrade image's manifest with the build's.
func checkRelease(t *testing.T, m upgradeimage.Manifest, build *Manifest) {
	t.Helper()
	kinds := map[string]string{"kernel": upgradeimage.KernelName, "initrd": upgradeimage.InitrdName, "rootfs": upgradeimage.RootfsName, "release": upgradeimage.ReleaseName}
	if m.Version != build.Version || m.Arch != build.Arch || len(m.Files) != 4 {
		t.Errorf("release manifest %+v", m)
	}
	for _, a := range build.Artifacts {
		n, ok := kinds[a.Kind]
		if !ok {
			continue
		}
		if f, found := m.File(n); !found || f.SHA256 != a.SHA256 || f.Size != a.Size {
			t.Errorf("%s: image has %+v, build %+v", n, f, a)
		}
	}
}

func checkUpgradeIndex(t *testing.T, idx v1.ImageIndex, digest v1.Hash, build *Manifest) {
	t.Helper()
	if d, err := idx.Digest(); err != nil || d != digest {
		t.Errorf("index digest %s (%v), want %s", d, err, digest)
	}
	m, err := upgradeimage.Verify(platformImage(t, idx, build.Arch), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRelease(t, m, build)
}

func platformImage(t *testing.T, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s image in the index", arch)
	return nil
}

func layerFile(t *testing.T, l v1.Layer, name string) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s in the layer", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
}

// fakeBuild writes what Image leaves for one target: the parts (the rootfs
// a real verity image of a squashfs holding /usr/bin/kestrel), the build
// manifest and, when key is given, the signed release manifest.
func fakeBuild(t *testing.T, dir, version, target, arch, key string) *Manifest {
	t.Helper()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755)
	if err := os.WriteFile(filepath.Join(tree, "usr/bin/kestrel"), []byte("\x7fELF kestrel "+target), 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(dir, Prefix(version, target))
	if out, err := exec.Command("mksquashfs", tree, prefix+".squashfs", "-noappend", "-all-root", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	os.WriteFile(prefix+".vmlinuz", []byte("kernel "+target), 0o644)
	os.WriteFile(prefix+".initrd", []byte("initrd "+target), 0o644)
	vp, err := verity.Build(prefix+".squashfs", prefix+".rootfs")
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{Version: version, Target: target, Arch: arch, Verity: vp}
	for _, a := range []struct{ kind, ext string }{{"kernel", ".vmlinuz"}, {"initrd", ".initrd"}, {"rootfs", ".rootfs"}} {
		art, err := describe(a.kind, prefix+a.ext)
		if err != nil {
			t.Fatal(err)
		}
		m.Artifacts = append(m.Artifacts, art)
	}
	if key != "" {
		if err := signRelease(m, key, prefix+".release.json"); err != nil {
			t.Fatal(err)
		}
		art, err := describe("release", prefix+".release.json")
		if err != nil {
			t.Fatal(err)
		}
		m.Artifacts = append(m.Artifacts, art)
	}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(prefix+".json", data, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUpgradeImage(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	tests := []struct {
		name     string
		builds   [][3]string // version, target, arch
		change   string      // a part rewritten after the build
		unsigned bool        // built without -sign-key
		version  string
		targets  []string
		want     []string // targets in the image
		wantErr  string
	}{
		{name: "every target of the version", builds: [][3]string{{"1.0", "amd64", "amd64"}, {"1.0", "arm64", "arm64"}, {"1.0-rc1", "amd64", "amd64"}},
			version: "1.0", want: []string{"amd64", "arm64"}},
		{name: "boards of one arch, one chosen", builds: [][3]string{{"1.0", "arm64", "arm64"}, {"1.0", "rpi4", "arm64"}},
			version: "1.0", targets: []string{"rpi4"}, want: []string{"rpi4"}},
		{name: "boards of one arch cannot share an index", builds: [][3]string{{"1.0", "arm64", "arm64"}, {"1.0", "rpi4", "arm64"}},
			version: "1.0", wantErr: "targets arm64 and rpi4 are both arm64"},
		{name: "no build of the version", builds: [][3]string{{"1.0-rc1", "amd64", "amd64"}}, version: "1.0", wantErr: "no build of version 1.0"},
		{name: "missing target", builds: [][3]string{{"1.0", "amd64", "amd64"}}, version: "1.0", targets: []string{"armv7"}, wantErr: "no build of 1.0 for armv7"},
		{name: "part changed after the build", builds: [][3]string{{"1.0", "amd64", "amd64"}}, change: "kestrel-1.0-amd64.initrd",
			version: "1.0", wantErr: "rebuilt or changed since?"},
		{name: "build without a signed release manifest", builds: [][3]string{{"1.0", "amd64", "amd64"}}, unsigned: true,
			version: "1.0", wantErr: "lists no release (no signed release manifest: build the image with -sign-key)"},
	}
	key, _ := testKeys(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			builds := map[string]*Manifest{}
			for _, b := range tt.builds {
				k := key
				if tt.unsigned {
					k = ""
				}
				builds[b[0]+"/"+b[1]] = fakeBuild(t, dir, b[0], b[1], b[2], k)
			}
			if tt.change != "" {
				os.WriteFile(filepath.Join(dir, tt.change), []byte("changed"), 0o644)
			}
			res, err := UpgradeImage(context.Background(), UpgradeOptions{OutDir: dir, Version: tt.version, Targets: tt.targets, Time: 1700000000})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Manifests) != len(tt.want) {
				t.Fatalf("%d arches, want %v", len(res.Manifests), tt.want)
			}
			for i, target := range tt.want {
				b := builds[tt.version+"/"+target]
				checkRelease(t, res.Manifests[i], b)
				if target != b.Arch && res.Manifests[i].Board != target {
					t.Errorf("board %q, want %q", res.Manifests[i].Board, target)
				}
			}
			idx, err := readArchive(res.Archive, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			b := builds[tt.version+"/"+tt.want[0]]
			layers, _ := platformImage(t, idx, b.Arch).Layers()
			if got := string(layerFile(t, layers[0], "usr/bin/kestrel")); got != "\x7fELF kestrel "+tt.want[0] {
				t.Errorf("kestrel in the image: %q", got)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("scratch %s left in the output directory", e.Name())
				}
			}
		})
	}
}

// The controller image with the real controller built for amd64: a static
// binary, the OCI archive and the k3s-importable docker-archive, pushed and
// pulled back.
func TestControllerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("building the controller skipped in -short mode")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/" + controllerimage.Reference("1.0.0")
	out := t.TempDir()
	res, err := ControllerImage(context.Background(), ControllerOptions{
		OutDir: out, Version: "1.0.0", Arches: []string{"amd64"}, Package: "github.com/kestrel-os/kestrel/cmd/upgrade-controller",
		CABundle: "", CacheDir: t.TempDir(), Time: 1700000000, Push: ref,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Archive != filepath.Join(out, "kestrel-upgrade-controller-1.0.0.oci.tar") || len(res.Docker) != 1 ||
		res.Docker[0] != filepath.Join(out, "kestrel-upgrade-controller-1.0.0-amd64.tar") {
		t.Fatalf("result %+v", res)
	}
	layers := checkControllerArchive(t, res.Docker[0], controllerimage.FullReference("1.0.0"), "1.0.0")
	nr, _ := name.ParseReference(res.Pushed)
	pulled, err := remote.Index(nr)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pulled.Digest(); d != res.Digest {
		t.Errorf("pulled %s, built %s", d, res.Digest)
	}
	sum := sha256.Sum256(layerFile(t, layers[0], "usr/bin/upgrade-controller"))
	pl, _ := platformImage(t, pulled, "amd64").Layers()
	if got := sha256.Sum256(layerFile(t, pl[0], "usr/bin/upgrade-controller")); got != sum {
		t.Errorf("pushed binary %s differs from the docker-archive's %s", hex.EncodeToString(got[:]), hex.EncodeToString(sum[:]))
	}
}

// The rootfs's copy of the controller image: built for the target, handed
// to k3s's airgap directory by stage 2's k3smanifests.Apply, importable
// under the name the shipped Deployment uses.
func TestShipControllerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("building the controller skipped in -short mode")
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	o := Options{Image: imagedef.Image{Arch: "amd64"}, Version: "1.0.0+k3s1", Time: 1700000000}
	if err := o.shipControllerImage(root); err != nil {
		t.Fatal(err)
	}
	if err := manifests.Ship("../../../manifests/upgrade-controller", root, controllerimage.Reference(o.Version)); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/k3s"), nil, 0o755)
	if err := manifests.Apply(root, func() *config.Config { return &config.Config{} }); err != nil {
		t.Fatal(err)
	}
	imported := filepath.Join(root, manifests.ImagesDir, manifests.Prefix+manifests.ImageName)
	data, _ := os.ReadFile(imported)
	sum := sha256.Sum256(data)
	side, err := os.ReadFile(filepath.Join(root, manifests.ShippedImageDir, manifests.ImageName+manifests.SumSuffix))
	if err != nil || string(side) != hex.EncodeToString(sum[:])+"  "+manifests.ImageName+"\n" {
		t.Errorf("sidecar %q (%v), copy's sha256 %x", side, err, sum)
	}
	mf, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(imported) })
	if err != nil {
		t.Fatal(err)
	}
	if len(mf) != 1 || strings.Join(mf[0].RepoTags, " ") != "docker.io/kestrel/upgrade-controller:1.0.0-k3s1" {
		t.Errorf("archive tags %v", mf[0].RepoTags)
	}
	dep, _ := os.ReadFile(filepath.Join(root, manifests.K3sDir, manifests.Prefix+"deployment.yaml"))
	if !strings.Contains(string(dep), "image: kestrel/upgrade-controller:1.0.0-k3s1\n") {
		t.Errorf("deployment does not name the shipped image:\n%s", dep)
	}
	checkControllerArchive(t, imported, mf[0].RepoTags[0], "1.0.0+k3s1")
}

// checkControllerArchive reads a controller docker-archive tagged ref:
// the config runs as 65532 on amd64, the binary is static and prints
// version. It returns the image's layers.
func checkControllerArchive(t *testing.T, path, ref, version string) []v1.Layer {
	t.Helper()
	tag, _ := name.NewTag(ref)
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil || cf.Config.User != controllerimage.User || cf.Architecture != "amd64" {
		t.Fatalf("config %+v, %v", cf, err)
	}
	layers, _ := img.Layers()
	bin := filepath.Join(t.TempDir(), "upgrade-controller")
	os.WriteFile(bin, layerFile(t, layers[0], "usr/bin/upgrade-controller"), 0o755)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the controller binary is dynamically linked")
		}
	}
	if v, err := exec.Command(bin, "-version").CombinedOutput(); err != nil || !strings.Contains(string(v), version) {
		t.Errorf("upgrade-controller -version: %v %s", err, v)
	}
	return layers
}

// TestPushProgress: a push to an in-process registry reports that it
// started, the bytes sent at each tenth once the size is known, then bytes,
// time and rate, and what was pushed.
func TestPushProgress(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/kestrel/progress:test"
	idx, err := random.Index(256<<10, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	pushed, err := push(context.Background(), ref, idx, nil, progress.New(&lines))
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	what := regexp.QuoteMeta("push " + ref)
	want := []string{
		`^` + what + `: started$`,
		`^` + what + `: \S+ [KM]iB of \S+ [KM]iB \(\d+%\)$`, // at least one running line
		`^` + what + `: \d\S* [KM]iB in \S+ \(\S+ [KMG]?i?B/s\)$`,
		`^pushed ` + regexp.QuoteMeta(pushed) + `$`,
	}
	linesInOrder(t, lines.String(), want)
	if !strings.HasSuffix(pushed, "@"+d.String()) {
		t.Errorf("pushed %s, want the index digest %s", pushed, d)
	}
}

// TestGoBuildStampsVersion: a binary goBuild makes reports the version it
// was built as through internal/buildinfo, not buildinfo's "dev".
func TestGoBuildStampsVersion(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("goBuild builds for linux")
	}
	bin := filepath.Join(t.TempDir(), "printversion")
	if err := goBuild("./testdata/printversion", bin, "1.2.3-test", runtime.GOARCH, ""); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "1.2.3-test" {
		t.Errorf("the built binary says version %q, want 1.2.3-test", got)
	}
}

// linesInOrder fails unless out has a line matching each regular
// expression of want, in that order (other lines may come between).
func linesInOrder(t *testing.T, out string, want []string) {
	t.Helper()
	logged := strings.Split(out, "\n")
	at := 0
	for _, w := range want {
		re := regexp.MustCompile(w)
		for at < len(logged) && !re.MatchString(logged[at]) {
			at++
		}
		if at == len(logged) {
			t.Errorf("no line matching %s (in this order) in:\n%s", w, out)
			return
		}
	}
}
