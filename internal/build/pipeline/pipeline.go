// Package pipeline is kestrel-build's pipeline: from an image definition
// and the versions file to the artifacts in the output directory.
//
//	fetch + unpack Debian packages (kernel, systemd-boot-efi, busybox-static,
//	  tzdata; dosfstools and libc6 for fsck.fat)
//	-> resolve the initramfs and rootfs module sets
//	-> build the kestrel binary (and the stage-1 /init) for the target
//	-> initramfs (cpio + zstd), rootfs tree -> squashfs
//	-> ESP files, GPT disk image, manifest
//
// Outputs, for target <name> and version <v>, in the output directory:
// kestrel-<v>-<name>.img (disk), .vmlinuz, .initrd, .rootfs (the parts of
// a release: .rootfs is the root partition image, the squashfs padded to
// 4096 bytes and followed by its dm-verity hash tree, internal/verity),
// .squashfs (the squashfs alone, for inspection and benchmarks), .json
// (manifest: sizes, sha256, kernel release, module lists, verity
// parameters) and, with Options.SignKey, .release.json (the signed release
// manifest, internal/release; Bundle packs a release into one file). The
// slot's boot entry carries the verity parameters; Options.TrustedKeys
// go into both the rootfs and the initramfs. The baseline initramfs of the boot
// benchmark, baseline-<name>.initrd, is written next to them (the
// baseline-initrd command writes only it).
//
// Caching: packages are downloaded and unpacked once (internal/build/deb), Go's build
// cache covers the binaries, and a squashfs of an unchanged rootfs tree is
// reused (internal/build/rootfs). Everything else is rebuilt each time; it takes
// seconds.
//
// k3s goes into the rootfs only when asked (Options.K3s), through
// internal/k3s/fetch; a base image has none. The upgrade controller's manifests
// go in when Options.Manifests is set (internal/k3s/manifests).
//
// The release's container images are separate steps (oci.go):
// UpgradeImage packs the builds found in the output directory into the
// upgrade image, ControllerImage builds the controller's image.
//
// Boot chains (bootchain.go): systemd-boot (loader, loader.conf, a BLS
// entry) or the U-Boot script (boot.scr compiled with mkimage, the A/B
// state file, slot a's entry, device trees and the firmware files of
// boot.firmware). An SD image (board.sd_image) also gets a hybrid MBR, a
// power-of-two size and kestrel-<v>-<name>.img.xz.
//
// Limits: one slot (a) is installed; root-b stays empty until the first
// upgrade.
package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/build/controllerimage"
	"github.com/kestrel-os/kestrel/internal/build/deb"
	"github.com/kestrel-os/kestrel/internal/build/diskimage"
	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/build/initramfs"
	"github.com/kestrel-os/kestrel/internal/build/modtree"
	"github.com/kestrel-os/kestrel/internal/build/rootfs"
	k3sfetch "github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/internal/k3s/manifests"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/progress"
	"github.com/kestrel-os/kestrel/internal/release"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// Options are the inputs of a build.
type Options struct {
	Image    imagedef.Image
	Versions imagedef.Versions
	// Version is the release being built (default Versions.Kestrel).
	Version string
	// OutDir receives the artifacts.
	OutDir string
	// CacheDir holds downloaded packages (debs/) and build state (build/).
	CacheDir string
	// Kestrel is either a Go package to build for the target
	// ("./cmd/kestrel") or the path of a prebuilt binary (a file that
	// exists). Same for BaselineInit.
	Kestrel      string
	BaselineInit string
	// Overlay is the rootfs overlay directory.
	Overlay string
	// Manifests is the upgrade controller's manifest directory, shipped
	// into the rootfs with the controller image of Version stamped in
	// (internal/k3s/manifests); empty ships none. A rootfs with k3s also gets
	// that image (built for the target) for k3s's airgap import.
	Manifests string
	// CABundle is the host's CA bundle put into the rootfs.
	CABundle string
	// HostBusybox lists the applets when the target's busybox cannot run
	// on the host (foreign arch); same Debian version, same applets.
	HostBusybox string
	// K3s says whether the rootfs carries k3s: K3sNone (the base OS),
	// K3sPinned (the release pinned in the versions file, via internal/k3s/fetch:
	// $K3S_BINARY, cache or download, always checked against the pin) or
	// K3sStandin (like K3sPinned but $K3S_BINARY may be the test stand-in;
	// for test images only) or K3sKubelet (test images only: $K3S_BINARY
	// must be the k3s-kubelet stand-in, and the upstream node runtime from
	// NodeBins goes in with it: kubenode.go).
	K3s string
	// NodeBins is the directory scripts/k8s-node-bins.sh builds the
	// kubelet and containerd into; read only for K3sKubelet.
	NodeBins string
	// VersionsFile is the versions file path, read by internal/k3s/fetch for the
	// k3s pin.
	VersionsFile string
	// SignKey is the private key file (internal/release) that signs the
	// release manifest, written as kestrel-<v>-<name>.release.json; empty
	// writes none.
	SignKey string
	// TrustedKeys are public key files baked into the rootfs and the
	// initramfs at layout.ReleaseKeysDir: the keys the node accepts
	// releases from.
	TrustedKeys []string
	// Time stamps every file in the images (SOURCE_DATE_EPOCH).
	Time int64
	// ISO also writes the live and installer ISO, kestrel-<v>-<name>.iso
	// (iso.go; needs SignKey).
	ISO bool
	// Log receives progress lines (kestrel-build: on stderr): each step
	// with its duration, downloads with bytes and rate; nil discards them.
	Log *progress.Log
}

// Values of Options.K3s.
const (
	K3sNone    = "none"
	K3sPinned  = "pinned"
	K3sStandin = "standin"
	K3sKubelet = "kubelet"
)

// Artifact is one output file in the manifest.
type Artifact struct {
	Kind   string `json:"kind"` // disk, kernel, initrd, rootfs (partition image), squashfs, baseline-initrd, release (signed manifest), iso
	Path   string `json:"path"` // relative to the manifest
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest describes one build; written as kestrel-<v>-<name>.json.
type Manifest struct {
	Version       string     `json:"version"`
	Target        string     `json:"target"`
	Arch          string     `json:"arch"`
	KernelRelease string     `json:"kernel_release"`
	KernelPackage string     `json:"kernel_package"`
	KernelVersion string     `json:"kernel_package_version"`
	Cmdline       string     `json:"cmdline"`
	Artifacts     []Artifact `json:"artifacts"`
	// Modules lists the module load order of each image, and the rootfs
	// modules shipped for on-demand loading only.
	Modules struct {
		Initramfs []string `json:"initramfs"`
		Rootfs    []string `json:"rootfs"`
		OnDemand  []string `json:"rootfs_on_demand"`
	} `json:"modules"`
	// Partitions in MiB, as laid out in the disk image.
	Partitions imagedef.Partitions `json:"partitions"`
	// Verity are the rootfs partition image's dm-verity parameters.
	Verity verity.Params `json:"verity"`
	// K3s is the k3s in the rootfs; absent for a base image.
	K3s *K3sInfo `json:"k3s,omitempty"`
}

// K3sInfo records which k3s went into the rootfs.
type K3sInfo struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Source  string `json:"source"` // local, cache, download
	Standin bool   `json:"standin,omitempty"`
	// NodeRuntime is true when the TEST-ONLY upstream kubelet + containerd
	// went in with the stand-in (K3sKubelet).
	NodeRuntime bool `json:"node_runtime,omitempty"`
}

// Prefix is the common file name stem: kestrel-<v>-<name>.
func Prefix(version, target string) string { return "kestrel-" + version + "-" + target }

// BaselineName is the baseline initramfs's file name.
func BaselineName(target string) string { return "baseline-" + target + ".initrd" }

// inputs are the unpacked packages a build uses.
type inputs struct {
	kernelRoot, bootRoot, busyboxRoot string
	release                           string
	applets                           []string          // busybox applet paths
	tzdataRoot                        string            // unpacked tzdata ("": none)
	dosfstoolsRoot, libcRoot          string            // unpacked dosfstools and libc6 ("": no fsck.fat)
	firmwareRoots                     map[string]string // boot.firmware package -> unpacked tree
}

// Image runs the whole pipeline and returns the manifest it wrote.
func Image(o Options) (*Manifest, error) {
	o = o.withDefaults()
	img, v := o.Image, o.Versions
	start := time.Now()
	keys, err := trustedKeys(o.TrustedKeys)
	if err != nil {
		return nil, err
	}
	in, err := fetch(o)
	if err != nil {
		return nil, err
	}

	tree, err := modtree.Scan(filepath.Join(in.kernelRoot, layout.ModulesDir, in.release))
	if err != nil {
		return nil, err
	}
	initSel, err := tree.Resolve(img.Initramfs.Modules, nil)
	if err != nil {
		return nil, fmt.Errorf("initramfs modules: %w", err)
	}
	rootSel, err := tree.Resolve(img.Rootfs.Modules, img.Rootfs.Optional)
	if err != nil {
		return nil, fmt.Errorf("rootfs modules: %w", err)
	}
	// What the rootfs carries: the boot set plus the on-demand set.
	shipSel, err := tree.Resolve(append(append([]string(nil), img.Rootfs.Modules...), img.Rootfs.Shipped...), img.Rootfs.Optional)
	if err != nil {
		return nil, fmt.Errorf("rootfs shipped modules: %w", err)
	}
	for _, m := range rootSel.Missing {
		o.Log.Printf("optional module %s: not in kernel %s, left out", m, in.release)
	}

	work, err := o.workDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	kestrelBin, err := o.binary(o.Kestrel, filepath.Join(work, "kestrel"))
	if err != nil {
		return nil, err
	}
	k3s, err := o.fetchK3s()
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("output dir: %w", err)
	}
	prefix := filepath.Join(o.OutDir, Prefix(o.Version, img.Name))
	kernelOut, initrdOut, squashOut, rootOut, diskOut := prefix+".vmlinuz", prefix+".initrd", prefix+".squashfs", prefix+".rootfs", prefix+".img"

	if err := rootfs.CopyFile(filepath.Join(in.kernelRoot, "boot", "vmlinuz-"+in.release), kernelOut, 0o644); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	step := o.Log.Step("initramfs")
	if err := o.writeInitramfs(initrdOut, work, kestrelBin, keys, in, tree, initSel); err != nil {
		return nil, err
	}
	step.Done(fmt.Sprintf("%d modules, %s", len(initSel.Modules), fileSize(initrdOut)))
	if err := o.writeRootfs(squashOut, filepath.Join(work, "rootfs"), kestrelBin, keys, k3s, in, tree, rootSel, shipSel); err != nil {
		return nil, err
	}
	step = o.Log.Step("verity")
	vp, err := verity.Build(squashOut, rootOut)
	if err != nil {
		return nil, err
	}
	step.Done(fmt.Sprintf("%d data blocks, tree %d bytes, root hash %s", vp.DataBlocks, verity.TreeSize(vp.DataBlocks), vp.RootHash))

	entry := bls.Entry{Slot: layout.Slots[0], Version: o.Version, Options: append(o.cmdline(), vp.CmdlineOptions()...)}
	espFiles, espData, err := o.espContents(in, entry, kernelOut, initrdOut, work)
	if err != nil {
		return nil, err
	}
	spec := diskimage.Spec{
		Arch:       img.Arch,
		Seed:       Prefix(o.Version, img.Name),
		ESPMiB:     img.Partitions.ESPMiB,
		RootMiB:    img.Partitions.RootMiB,
		StateMiB:   img.Partitions.StateMiB,
		ESP:        espFiles,
		ESPData:    espData,
		HybridMBR:  img.Board.SDImage,
		PowerOfTwo: img.Board.SDImage,
		RootA:      rootOut,
		StateDirs:  layout.PersistentDirs,
		Time:       o.Time,
	}
	step = o.Log.Step("disk image")
	if err := diskimage.Build(spec, diskOut); err != nil {
		return nil, err
	}
	step.Done(fmt.Sprintf("%s, ESP %d MiB, root %d MiB ×2, state %d MiB", filepath.Base(diskOut), spec.ESPMiB, spec.RootMiB, spec.StateMiB))
	var xzOut string
	if img.Board.SDImage {
		xzOut = diskOut + ".xz"
		step = o.Log.Step("xz " + filepath.Base(diskOut))
		if err := xzFile(diskOut, xzOut); err != nil {
			return nil, err
		}
		step.Done(fileSize(xzOut))
	}
	baseline, err := Baseline(o)
	if err != nil {
		return nil, err
	}

	m := &Manifest{
		Version: o.Version, Target: img.Name, Arch: img.Arch,
		KernelRelease: in.release, KernelPackage: v.KernelPackage(img), KernelVersion: v.Debian.KernelVersion,
		Cmdline: entry.Cmdline(), Partitions: img.Partitions, Verity: vp,
	}
	m.Modules.Initramfs, m.Modules.Rootfs = initSel.Names(), rootSel.Names()
	loaded := map[string]bool{}
	for _, n := range m.Modules.Rootfs {
		loaded[n] = true
	}
	for _, n := range shipSel.Names() {
		if !loaded[n] {
			m.Modules.OnDemand = append(m.Modules.OnDemand, n)
		}
	}
	if k3s != nil {
		m.K3s = &K3sInfo{Version: k3s.Version, SHA256: k3s.SHA256, Source: string(k3s.Source), Standin: k3s.Standin, NodeRuntime: o.K3s == K3sKubelet}
	}
	for _, a := range []struct{ kind, path string }{
		{"disk", diskOut}, {"kernel", kernelOut}, {"initrd", initrdOut}, {"rootfs", rootOut}, {"squashfs", squashOut},
		{"baseline-initrd", baseline}, {"disk-xz", xzOut},
	} {
		if a.path == "" {
			continue
		}
		art, err := describe(a.kind, a.path)
		if err != nil {
			return nil, err
		}
		m.Artifacts = append(m.Artifacts, art)
	}
	if o.SignKey != "" {
		if err := signRelease(m, o.SignKey, prefix+".release.json"); err != nil {
			return nil, err
		}
		art, err := describe("release", prefix+".release.json")
		if err != nil {
			return nil, err
		}
		m.Artifacts = append(m.Artifacts, art)
	}
	if o.ISO {
		iso, err := o.writeISO(prefix, in.bootRoot, work, vp)
		if err != nil {
			return nil, err
		}
		art, err := describe("iso", iso)
		if err != nil {
			return nil, err
		}
		m.Artifacts = append(m.Artifacts, art)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(prefix+".json", append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	o.Log.Printf("done: %s (%s)", diskOut, progress.Duration(time.Since(start)))
	return m, nil
}

// Baseline writes the benchmark's baseline initramfs: /init is the tiny
// baseline program, /dev/console its only other entry. It returns the
// path written.
func Baseline(o Options) (string, error) {
	o = o.withDefaults()
	work, err := o.workDir()
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	bin, err := o.binary(o.BaselineInit, filepath.Join(work, "baseline-init"))
	if err != nil {
		return "", err
	}
	a := initramfs.New(o.Time)
	if err := a.AddHostFile(layout.Init, bin); err != nil {
		return "", err
	}
	if err := a.AddCharDev("/dev/console", 0o600, 5, 1); err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("output dir: %w", err)
	}
	out := filepath.Join(o.OutDir, BaselineName(o.Image.Name))
	step := o.Log.Step("baseline initramfs")
	if err := a.WriteFile(out, o.Image.Initramfs.Compression); err != nil {
		return "", err
	}
	step.Done(fileSize(out))
	return out, nil
}

func (o Options) withDefaults() Options {
	if o.Version == "" {
		o.Version = o.Versions.Kestrel
	}
	return o
}

// workDir makes a scratch directory of this build under the cache, so
// that builds running side by side (make image and the boot tests) never
// share a rootfs tree. Only the squashfs cache next to it is shared.
func (o Options) workDir() (string, error) {
	parent := filepath.Join(o.CacheDir, "build", o.Image.Name)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "run-")
	if err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	return dir, nil
}

// fetch downloads and unpacks the pinned packages.
func fetch(o Options) (inputs, error) {
	img, v := o.Image, o.Versions
	debs := filepath.Join(o.CacheDir, "debs")
	in := inputs{release: v.KernelRelease(img), firmwareRoots: map[string]string{}}
	pkgs := []deb.Package{{Name: v.KernelPackage(img), Version: v.Debian.KernelVersion, Arch: img.DebianArch}}
	dests := []*string{&in.kernelRoot}
	if img.Boot.Chain == imagedef.ChainSystemdBoot {
		pkgs = append(pkgs, deb.Package{Name: "systemd-boot-efi", Version: v.Debian.SystemdBootEFI, Arch: img.DebianArch})
		dests = append(dests, &in.bootRoot)
	}
	pkgs = append(pkgs, deb.Package{Name: "busybox-static", Version: v.Debian.BusyboxStatic, Arch: img.DebianArch})
	dests = append(dests, &in.busyboxRoot)
	fwRoots := map[string]*string{}
	for _, fw := range img.Boot.Firmware {
		if fwRoots[fw.Package] != nil {
			continue
		}
		ver, ok := v.Debian.Firmware[fw.Package]
		if !ok {
			return inputs{}, fmt.Errorf("boot.firmware %s: no version pinned in the versions file (debian.firmware.%s)", fw.Package, fw.Package)
		}
		arch := fw.Arch
		if arch == "" {
			arch = img.DebianArch
		}
		fwRoots[fw.Package] = new(string)
		pkgs = append(pkgs, deb.Package{Name: fw.Package, Version: ver, Arch: arch})
		dests = append(dests, fwRoots[fw.Package])
	}
	if v.Debian.Tzdata != "" {
		pkgs = append(pkgs, deb.Package{Name: "tzdata", Version: v.Debian.Tzdata, Arch: "all"})
		dests = append(dests, &in.tzdataRoot)
	}
	if v.Debian.Dosfstools != "" { // imagedef checked that libc6 comes with it
		pkgs = append(pkgs,
			deb.Package{Name: "dosfstools", Version: v.Debian.Dosfstools, Arch: img.DebianArch},
			deb.Package{Name: "libc6", Version: v.Debian.Libc6, Arch: img.DebianArch})
		dests = append(dests, &in.dosfstoolsRoot, &in.libcRoot)
	}
	for i, p := range pkgs {
		step := o.Log.Step("deb " + p.String())
		root, err := deb.FetchUnpack(p, debs, o.Log)
		if err != nil {
			return inputs{}, err
		}
		step.Done("ready in " + root)
		*dests[i] = root
	}
	for name, root := range fwRoots {
		in.firmwareRoots[name] = *root
	}
	listWith := filepath.Join(in.busyboxRoot, "bin/busybox")
	if img.Arch != runtime.GOARCH && o.HostBusybox != "" {
		listWith = o.HostBusybox
	}
	applets, err := rootfs.BusyboxApplets(listWith)
	if err != nil {
		return inputs{}, err
	}
	in.applets = applets
	return in, nil
}

// binary returns a target binary: src itself when it is an existing file,
// else the result of building Go package src into out.
func (o Options) binary(src, out string) (string, error) {
	if st, err := os.Stat(src); err == nil && st.Mode().IsRegular() {
		return src, nil
	}
	step := o.Log.Step("go build " + src + " for " + o.Image.Arch)
	if err := goBuild(src, out, o.Version, o.Image.Arch, o.Image.GOARM); err != nil {
		return "", err
	}
	step.Done(fileSize(out))
	return out, nil
}

// fetchK3s returns the verified k3s for the rootfs, or nil for K3sNone.
func (o Options) fetchK3s() (*k3sfetch.Result, error) {
	switch o.K3s {
	case "", K3sNone:
		return nil, nil
	case K3sPinned, K3sStandin, K3sKubelet:
	default:
		return nil, fmt.Errorf("k3s %q: want %s, %s, %s or %s", o.K3s, K3sNone, K3sPinned, K3sStandin, K3sKubelet)
	}
	pin, err := k3sfetch.LoadPin(o.VersionsFile)
	if err != nil {
		return nil, err
	}
	step := o.Log.Step("k3s " + pin.Version)
	res, err := k3sfetch.Fetch(context.Background(), k3sfetch.Options{
		Pin: pin, Arch: o.Image.Arch, CacheDir: filepath.Join(o.CacheDir, "k3s"),
		Log: o.Log, AllowStandin: o.K3s == K3sStandin || o.K3s == K3sKubelet,
	})
	if err != nil {
		return nil, err
	}
	step.Done(string(res.Source))
	return &res, nil
}

// cmdline is the kernel command line of every slot, before kestrel.slot=.
func (o Options) cmdline() []string {
	var words []string
	if o.Image.Boot.Console != "" {
		words = append(words, "console="+o.Image.Boot.Console)
	}
	if o.Image.Boot.Quiet {
		words = append(words, "quiet")
	}
	return append(words, o.Image.Boot.Cmdline...)
}

// initramfsDirs are the mount points stage 1 uses inside the initramfs.
var initramfsDirs = []string{"/proc", "/sys", "/dev", "/run", "/tmp", layout.NewRoot}

// writeInitramfs writes the stage-1 initramfs to out, with initBin (the
// kestrel binary) as /init: it runs stage 1 and, exec'd again from memory
// after switch_root, stage 2 (stage1.SwitchRoot says why); work is
// scratch space.
func (o Options) writeInitramfs(out, work, initBin string, keys map[string][]byte, in inputs, tree *modtree.Tree, sel modtree.Selection) error {
	a := initramfs.New(o.Time)
	if err := a.AddHostFile(layout.Init, initBin); err != nil {
		return err
	}
	if err := a.AddCharDev("/dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	for _, d := range initramfsDirs {
		if err := a.AddDir(d, 0o755); err != nil {
			return err
		}
	}
	// The rescue shell stage 1 drops to when the root cannot be mounted,
	// with every applet (ls, mount, blkid, dmesg, ...) but init.
	if err := a.AddHostFile("/bin/busybox", filepath.Join(in.busyboxRoot, "bin/busybox")); err != nil {
		return err
	}
	for _, p := range in.applets {
		switch p {
		case "/bin/busybox", "/linuxrc", "/sbin/init", layout.Init:
			continue
		}
		if err := a.AddSymlink(p, "/bin/busybox"); err != nil {
			return err
		}
	}
	if err := a.AddFile(layout.ModuleList, modtree.ListFile(sel), 0o644); err != nil {
		return err
	}
	for name, data := range keys {
		if err := a.AddFile(keyPath(name), data, 0o644); err != nil {
			return err
		}
	}
	modDir := filepath.Join(work, "initramfs-modules")
	if err := tree.Install(sel, modDir); err != nil {
		return err
	}
	if err := a.AddTree(filepath.Join(layout.ModulesDir, in.release), modDir); err != nil {
		return fmt.Errorf("initramfs modules: %w", err)
	}
	return a.WriteFile(out, o.Image.Initramfs.Compression)
}

// writeRootfs assembles the rootfs tree in dir and squashes it to out; the
// modules of ship go in, those of load are listed for stage 2.
func (o Options) writeRootfs(out, dir, kestrelBin string, keys map[string][]byte, k3s *k3sfetch.Result, in inputs, tree *modtree.Tree, load, ship modtree.Selection) error {
	step := o.Log.Step("rootfs tree")
	spec := rootfs.Spec{
		Kestrel: kestrelBin, Busybox: filepath.Join(in.busyboxRoot, "bin/busybox"), Applets: in.applets,
		Overlay: o.Overlay, CABundle: o.CABundle,
		OSRelease: rootfs.OSRelease{Version: o.Version, Arch: o.Image.Name, Kernel: in.release},
	}
	if err := rootfs.Assemble(spec, dir); err != nil {
		return err
	}
	if in.tzdataRoot != "" {
		if err := installZoneinfo(in.tzdataRoot, dir); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if in.dosfstoolsRoot != "" {
		n, err := installFsckFAT(in.dosfstoolsRoot, in.libcRoot, dir)
		if err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		o.Log.Printf("rootfs: %s with its glibc: %s", layout.FsckFAT, progress.Bytes(n))
	}
	if o.Manifests != "" {
		if err := manifests.Ship(o.Manifests, dir, controllerimage.Reference(o.Version)); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		if k3s != nil {
			if err := o.shipControllerImage(dir); err != nil {
				return fmt.Errorf("rootfs: %w", err)
			}
		}
	}
	if err := tree.Install(ship, filepath.Join(dir, layout.ModulesDir, in.release)); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(layout.ModuleList)), 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, layout.ModuleList), modtree.ListFile(load), 0o644); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if k3s != nil {
		if err := k3sfetch.Install(*k3s, dir); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if o.K3s == K3sKubelet {
		if err := o.installKubeNode(dir, k3s, in); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if err := addTrustedKeys(dir, keys); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	step.Done(fmt.Sprintf("%d modules, %d loaded at boot", len(ship.Modules), len(load.Modules)))
	step = o.Log.Step("mksquashfs " + o.Image.Rootfs.Compression)
	opts := rootfs.SquashOptions{Compression: o.Image.Rootfs.Compression, BCJ: bcjFilter[o.Image.Arch], Time: o.Time}
	if err := rootfs.Squash(dir, out, opts, filepath.Join(o.CacheDir, "build", o.Image.Name, "squashfs-cache")); err != nil {
		return err
	}
	step.Done(fileSize(out))
	return nil
}

// bcjFilter is xz's executable filter per GOARCH (mksquashfs 4.5 has none
// for arm64).
var bcjFilter = map[string]string{"amd64": "x86", "arm": "arm"}

func describe(kind, path string) (Artifact, error) {
	p, err := release.NewPart(kind, path)
	if err != nil {
		return Artifact{}, fmt.Errorf("manifest: %w", err)
	}
	return Artifact{Kind: kind, Path: filepath.Base(path), Size: p.Size, SHA256: p.SHA256}, nil
}

// fileSize is a progress line's "12 MiB" for path, or "" if it cannot
// be read.
func fileSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return progress.Bytes(st.Size())
}
