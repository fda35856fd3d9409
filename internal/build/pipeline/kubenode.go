package pipeline

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/build/deb"
	"github.com/kestrel-os/kestrel/internal/build/rootfs"
	k3sfetch "github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/internal/progress"
)

// The TEST-ONLY Kubernetes node runtime (Options.K3s == K3sKubelet): the
// rootfs gets, next to the k3s-kubelet stand-in at /usr/bin/k3s
// (test/k3s-kubelet, which carries k3sfetch.StandinMarker and is refused
// for any other image), the upstream kubelet, containerd,
// containerd-shim-runc-v2 and ctr that scripts/k8s-node-bins.sh builds
// (Options.NodeBins; all static), Debian's runc with the libseccomp and
// glibc files it loads, Debian's CNI plugins NodePlugins with their glibc,
// and two image archives in k3s's airgap directory: the pod sandbox image
// PauseImage (the stand-in itself as /pause, which reaps and sleeps when
// called so) and the test image BusyboxImage (Debian's busybox-static with
// its applets linked). No registry is needed to start a pod.
//
// Limits: amd64 only (the node binaries are built for the host); the
// plugins' and runc's libraries are found as for fsck.fat (installWithLibs).

// Values of the node runtime's images, as the stand-in's containerd config
// and the boot tests name them.
const (
	PauseImage   = "kestrel.test/pause:1"
	BusyboxImage = "kestrel.test/busybox:1"
)

// NodeBinaries are what scripts/k8s-node-bins.sh builds into Options.NodeBins.
var NodeBinaries = []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr"}

// NodePlugins are the CNI plugins shipped from containernetworking-plugins.
var NodePlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// NodePins are the Debian packages of the node runtime: versions.yaml's
// test-node section.
type NodePins struct {
	Runc       string `yaml:"runc"`
	CNIPlugins string `yaml:"containernetworking-plugins"`
	Libseccomp string `yaml:"libseccomp2"`
}

// LoadNodePins reads the test-node section of the versions file.
func LoadNodePins(path string) (NodePins, error) {
	var top map[string]yaml.Node
	var p NodePins
	data, err := os.ReadFile(path)
	if err != nil {
		return p, fmt.Errorf("versions: %w", err)
	}
	if err := yaml.Unmarshal(data, &top); err != nil {
		return p, fmt.Errorf("versions %s: %w", path, err)
	}
	node, ok := top["test-node"]
	if !ok {
		return p, fmt.Errorf("versions %s: no %q section (needed by -k3s %s)", path, "test-node", K3sKubelet)
	}
	if err := decodeKnown(&node, &p); err != nil {
		return p, fmt.Errorf("versions %s:%d: test-node: %w", path, node.Line, err)
	}
	for k, v := range map[string]string{"runc": p.Runc, "containernetworking-plugins": p.CNIPlugins, "libseccomp2": p.Libseccomp} {
		if v == "" {
			return p, fmt.Errorf("versions %s:%d: test-node.%s: missing", path, node.Line, k)
		}
	}
	return p, nil
}

func decodeKnown(n *yaml.Node, dst any) error {
	raw, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(dst)
}

// installKubeNode puts the node runtime into the rootfs tree at dir.
// standin is the k3s-kubelet stand-in (its Result.Standin must be true).
func (o Options) installKubeNode(dir string, standin *k3sfetch.Result, in inputs) error {
	if standin == nil || !standin.Standin {
		return fmt.Errorf("-k3s %s: $%s must be the k3s-kubelet stand-in (test/k3s-kubelet): the node runtime goes only into test images", K3sKubelet, k3sfetch.EnvBinary)
	}
	if o.Image.Arch != "amd64" {
		return fmt.Errorf("-k3s %s: only amd64 (the node binaries are built for the build host)", K3sKubelet)
	}
	if o.Versions.Debian.Libc6 == "" {
		return fmt.Errorf("-k3s %s: debian.libc6 is not pinned (runc and the CNI plugins load glibc)", K3sKubelet)
	}
	step := o.Log.Step("test node runtime (upstream kubelet + containerd)")
	var added int64
	for _, b := range NodeBinaries {
		src := filepath.Join(o.NodeBins, b)
		if err := checkStatic(src); err != nil {
			return fmt.Errorf("node runtime: %w (build it with scripts/k8s-node-bins.sh)", err)
		}
		if err := rootfs.CopyFile(src, filepath.Join(dir, "usr/bin", b), 0o755); err != nil {
			return fmt.Errorf("node runtime: %w", err)
		}
		added += fileBytes(src)
	}
	pins, err := LoadNodePins(o.VersionsFile)
	if err != nil {
		return err
	}
	arch := o.Image.DebianArch
	roots := map[string]string{}
	for _, p := range []deb.Package{
		{Name: "runc", Version: pins.Runc, Arch: arch},
		{Name: "containernetworking-plugins", Version: pins.CNIPlugins, Arch: arch},
		{Name: "libseccomp2", Version: pins.Libseccomp, Arch: arch},
		{Name: "libc6", Version: o.Versions.Debian.Libc6, Arch: arch},
	} {
		root, err := deb.FetchUnpack(p, filepath.Join(o.CacheDir, "debs"), o.Log)
		if err != nil {
			return fmt.Errorf("node runtime: %w", err)
		}
		roots[p.Name] = root
	}
	libs := []string{roots["libseccomp2"], roots["libc6"]}
	n, err := installWithLibs(filepath.Join(roots["runc"], "usr/sbin/runc"), "/usr/sbin/runc", libs, dir)
	if err != nil {
		return fmt.Errorf("node runtime: %w", err)
	}
	added += n
	for _, p := range NodePlugins {
		n, err := installWithLibs(filepath.Join(roots["containernetworking-plugins"], "usr/lib/cni", p), "/usr/lib/cni/"+p, libs, dir)
		if err != nil {
			return fmt.Errorf("node runtime: %w", err)
		}
		added += n
	}
	images := filepath.Join(dir, k3sfetch.RootfsAirgapDir)
	if err := os.MkdirAll(images, 0o755); err != nil {
		return fmt.Errorf("node runtime: %w", err)
	}
	created := time.Unix(o.Time, 0).UTC()
	pause, err := testImage(created, []string{"/pause"}, []tarEntry{{name: "pause", mode: 0o755, src: standin.Binary}})
	if err != nil {
		return err
	}
	bbEntries := []tarEntry{{name: "bin/", mode: 0o755}, {name: "bin/busybox", mode: 0o755, src: filepath.Join(in.busyboxRoot, "bin/busybox")},
		{name: "tmp/", mode: 0o1777}, {name: "etc/", mode: 0o755}, {name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\n")}}
	for _, a := range in.applets {
		if a == "/bin/busybox" || !strings.HasPrefix(a, "/bin/") {
			continue // /bin is enough for a test image's commands
		}
		bbEntries = append(bbEntries, tarEntry{name: a[1:], link: "busybox"})
	}
	busybox, err := testImage(created, []string{"/bin/sh"}, bbEntries)
	if err != nil {
		return err
	}
	for ref, img := range map[string]v1.Image{PauseImage: pause, BusyboxImage: busybox} {
		p := filepath.Join(images, "kestrel-test-"+strings.SplitN(filepath.Base(ref), ":", 2)[0]+".tar")
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("node runtime: image %s: %w", ref, err)
		}
		if err := tarball.WriteToFile(p, tag, img); err != nil {
			return fmt.Errorf("node runtime: image %s: %w", ref, err)
		}
		added += fileBytes(p)
	}
	step.Done(fmt.Sprintf("%s (kubelet, containerd, runc, CNI %s, images %s and %s)", progress.Bytes(added), strings.Join(NodePlugins, "/"), PauseImage, BusyboxImage))
	return nil
}

// checkStatic refuses a missing or dynamically linked binary: the rootfs
// carries only the glibc files its known dynamic programs load.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; want a static build (CGO_ENABLED=0)", p)
		}
	}
	return nil
}

func fileBytes(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// tarEntry is one file of a test image's single layer: a directory (name
// ends in /), a symlink (link), a file from src or with data.
type tarEntry struct {
	name, link, src string
	mode            int64
	data            []byte
}

// testImage is a one-layer linux/amd64 image (uncompressed: the squashfs
// compresses it) running entrypoint.
func testImage(created time.Time, entrypoint []string, entries []tarEntry) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: created, Format: tar.FormatPAX}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			data := e.data
			if e.src != "" {
				var err error
				if data, err = os.ReadFile(e.src); err != nil {
					return nil, fmt.Errorf("test image: %w", err)
				}
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
			e.data = data
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("test image: %w", err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("test image: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("test image: %w", err)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64", OS: "linux", Created: v1.Time{Time: created},
		Config: v1.Config{Entrypoint: entrypoint, Env: []string{"PATH=/bin"}},
	})
	if err != nil {
		return nil, fmt.Errorf("test image: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(buf.Bytes(), types.DockerUncompressedLayer),
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "kestrel-build: test node image"}})
	if err != nil {
		return nil, fmt.Errorf("test image: %w", err)
	}
	return img, nil
}
