// Command kestrel-build is Kestrel's host-side image builder.
//
//	kestrel-build image -def images/amd64.yaml [-out out] [-version 0.1.0] [-k3s none|pinned|standin|kubelet] [-sign-key KEY] [-trusted-keys PUB[,PUB...]]
//	kestrel-build iso  (the image's flags; also writes kestrel-<v>-<target>.iso)
//	kestrel-build baseline-initrd -def images/amd64.yaml [-out out]
//	kestrel-build keygen -out DIR
//	kestrel-build bundle -key KEY [-out out] [-version 0.1.0] [-target amd64]
//	kestrel-build upgrade-image [-out out] [-version 0.1.0] [-targets amd64,arm64] [-push REF]
//	kestrel-build controller-image [-out out] [-version 0.1.0] [-arches amd64,arm64,arm] [-push REF]
//
// Run it from the repository root (paths default to the repository's
// layout, and Go packages such as ./cmd/kestrel are built from there). The
// pipeline lives in internal/build/pipeline; this file only reads flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"

	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/build/pipeline"
	"github.com/kestrel-os/kestrel/internal/progress"
)

const usage = `usage: kestrel-build <command> [flags]

commands:
  image            build the disk image and its parts (kernel, initrd, rootfs with verity tree, manifests)
  iso              "image", then the hybrid live and installer ISO (CD or USB stick)
  baseline-initrd  build the boot benchmark's baseline initramfs
  keygen           write a release signing key pair (release.key, release.pub) into -out
  bundle           write the signed single-file release bundle of an image build
  upgrade-image    build the upgrade image (OCI, every arch built by "image") from the image builds in -out
  controller-image build the upgrade controller's image (OCI archive + per-arch docker-archive for k3s)

run "kestrel-build <command> -h" for the flags`

func main() {
	log.SetFlags(0)
	log.SetPrefix("kestrel-build: ")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:], os.Stderr); err != nil {
		log.Fatal(err)
	}
}

// run runs one command; progress lines (each step and how long it took,
// bytes and rates of downloads and pushes) go to stderr.
func run(command string, args []string, stderr io.Writer) error {
	plog := progress.New(stderr)
	switch command {
	case "upgrade-image":
		return runUpgradeImage(args, plog)
	case "controller-image":
		return runControllerImage(args, plog)
	case "keygen":
		return runKeygen(args)
	case "bundle":
		return runBundle(args)
	}
	if command != "image" && command != "iso" && command != "baseline-initrd" {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet(command, flag.ExitOnError)
	def := fs.String("def", "images/amd64.yaml", "image definition")
	versions := fs.String("versions", "versions.yaml", "pinned versions file")
	out := fs.String("out", "out", "output directory")
	version := fs.String("version", "", "release version (default: kestrel: in the versions file)")
	cache := fs.String("cache", ".cache", "cache directory (downloaded packages, build state)")
	kestrel := fs.String("kestrel", "./cmd/kestrel", "Go package of the on-device binary, or a prebuilt binary")
	baseline := fs.String("baseline-init", "./cmd/kestrel-baseline-init", "Go package of the baseline /init, or a prebuilt binary")
	overlay := fs.String("overlay", "overlay", "rootfs overlay directory")
	manifests := fs.String("manifests", "manifests/upgrade-controller", "upgrade controller manifests shipped in the rootfs (empty: none)")
	ca := fs.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for the rootfs (the host's, from Debian's ca-certificates)")
	k3s := fs.String("k3s", "none", "k3s in the rootfs: none, pinned (versions file; $K3S_BINARY, cache or download) standin (test images: $K3S_BINARY may be the test stand-in) or kubelet (test images: $K3S_BINARY is the k3s-kubelet stand-in, with the upstream kubelet + containerd of -node-bins)")
	nodeBins := fs.String("node-bins", ".cache/k8s-node-bins", "kubelet, containerd, containerd-shim-runc-v2 and ctr for -k3s kubelet (scripts/k8s-node-bins.sh)")
	hostBusybox := fs.String("host-busybox", "/bin/busybox", "host busybox-static listing applets for foreign-arch targets")
	signKey := fs.String("sign-key", "", "private key file signing the release manifest (kestrel-<v>-<target>.release.json); empty: none")
	trusted := fs.String("trusted-keys", "", "comma-separated public key files baked into the rootfs and the initramfs as the node's trusted release keys")
	fs.Parse(args)

	img, err := imagedef.LoadImage(*def)
	if err != nil {
		return err
	}
	v, err := imagedef.LoadVersions(*versions)
	if err != nil {
		return err
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	o := pipeline.Options{
		Image: img, Versions: v, Version: *version, OutDir: *out, CacheDir: *cache,
		Kestrel: *kestrel, BaselineInit: *baseline, Overlay: *overlay, Manifests: *manifests, CABundle: *ca,
		HostBusybox: *hostBusybox, K3s: *k3s, NodeBins: *nodeBins, VersionsFile: *versions, Time: epoch, Log: plog,
		SignKey: *signKey, TrustedKeys: splitList(*trusted), ISO: command == "iso",
	}
	if command == "baseline-initrd" {
		path, err := pipeline.Baseline(o)
		if err == nil {
			plog.Printf("wrote %s", path)
		}
		return err
	}
	_, err = pipeline.Image(o)
	return err
}

// sourceDateEpoch is the timestamp of every file in the images:
// $SOURCE_DATE_EPOCH (reproducible-builds.org) or 0.
func sourceDateEpoch() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	t, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return t, nil
}
