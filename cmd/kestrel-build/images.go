package main

import (
	"context"
	"flag"
	"strings"

	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/build/pipeline"
	"github.com/kestrel-os/kestrel/internal/progress"
)

// runUpgradeImage is `kestrel-build upgrade-image`; progress goes to log.
func runUpgradeImage(args []string, log *progress.Log) error {
	fs := flag.NewFlagSet("upgrade-image", flag.ExitOnError)
	release := releaseFlags(fs)
	out := fs.String("out", "out", "output directory holding the image builds; receives kestrel-upgrade-<version>.oci.tar")
	targets := fs.String("targets", "", "comma-separated targets to include (default: every target built for the version)")
	push := fs.String("push", "", "also push the index to this registry reference (e.g. registry.example.net/kestrel/kestrel-upgrade:v1.2.0)")
	fs.Parse(args)
	v, epoch, err := release()
	if err != nil {
		return err
	}
	res, err := pipeline.UpgradeImage(context.Background(), pipeline.UpgradeOptions{
		OutDir: *out, Version: v, Targets: splitList(*targets), Time: epoch, Push: *push, Log: log,
	})
	if err != nil {
		return err
	}
	for _, m := range res.Manifests {
		p := m.Arch
		if m.Variant != "" {
			p += "/" + m.Variant
		}
		if m.Board != "" {
			p += " (" + m.Board + ")"
		}
		log.Printf("%s: %d files verified", p, len(m.Files))
	}
	log.Printf("wrote %s (index %s)", res.Archive, res.Digest)
	return nil
}

// runControllerImage is `kestrel-build controller-image`; progress goes to log.
func runControllerImage(args []string, log *progress.Log) error {
	fs := flag.NewFlagSet("controller-image", flag.ExitOnError)
	release := releaseFlags(fs)
	out := fs.String("out", "out", "output directory")
	arches := fs.String("arches", "amd64,arm64,arm", "comma-separated GOARCHes (arm is GOARM=7)")
	pkg := fs.String("controller", "./cmd/upgrade-controller", "Go package of the controller")
	ca := fs.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for the image (empty: none)")
	cache := fs.String("cache", ".cache", "cache directory (build scratch)")
	push := fs.String("push", "", "also push the index to this registry reference")
	fs.Parse(args)
	v, epoch, err := release()
	if err != nil {
		return err
	}
	res, err := pipeline.ControllerImage(context.Background(), pipeline.ControllerOptions{
		OutDir: *out, Version: v, Arches: splitList(*arches), Package: *pkg, CABundle: *ca,
		CacheDir: *cache, Time: epoch, Push: *push, Log: log,
	})
	if err != nil {
		return err
	}
	log.Printf("wrote %s (index %s)", res.Archive, res.Digest)
	for _, p := range res.Docker {
		log.Printf("wrote %s (docker-archive: copy to /var/lib/rancher/k3s/agent/images/ for k3s to import)", p)
	}
	return nil
}

// releaseFlags adds -version and -versions to fs; the function returned
// (called after fs.Parse) gives the release version (-version, else the
// versions file's kestrel:) and $SOURCE_DATE_EPOCH.
func releaseFlags(fs *flag.FlagSet) func() (string, int64, error) {
	versions := fs.String("versions", "versions.yaml", "pinned versions file (for the default version)")
	version := fs.String("version", "", "release version (default: kestrel: in the versions file)")
	return func() (string, int64, error) {
		epoch, err := sourceDateEpoch()
		if err != nil || *version != "" {
			return *version, epoch, err
		}
		v, err := imagedef.LoadVersions(*versions)
		if err != nil {
			return "", 0, err
		}
		return v.Kestrel, epoch, nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
