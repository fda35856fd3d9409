package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/build/isoimage"
	"github.com/kestrel-os/kestrel/internal/disklayout"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// ISOName is the live and installer ISO's file name.
func ISOName(version, target string) string { return Prefix(version, target) + ".iso" }

// writeISO writes the ISO of the build (isoimage): the release's kernel,
// initramfs and root image with the signed manifest, systemd-boot from
// loaderRoot, and the disk layout the installer writes. It needs the
// signed release manifest (Options.SignKey): the installer verifies slot A
// against it.
func (o Options) writeISO(prefix, loaderRoot, work string, vp verity.Params) (string, error) {
	if o.SignKey == "" {
		return "", fmt.Errorf("ISO: needs a signed release (a sign key): kestrel install verifies slot A against it")
	}
	img := o.Image
	dl := disklayout.Layout{
		ESPMiB: img.Partitions.ESPMiB, RootMiB: img.Partitions.RootMiB, StateMiB: img.Partitions.StateMiB,
		Options: o.cmdline(),
	}
	install, err := dl.Marshal()
	if err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, ISOName(o.Version, img.Name))
	spec := isoimage.Spec{
		Arch: img.Arch, Version: o.Version, LoaderPath: img.Boot.LoaderPath,
		Loader: filepath.Join(loaderRoot, "usr/lib/systemd/boot/efi", img.Boot.Loader),
		Kernel: prefix + ".vmlinuz", Initrd: prefix + ".initrd", Rootfs: prefix + ".rootfs", Release: prefix + ".release.json",
		Install: install, ESPMiB: img.Partitions.ESPMiB, StateMiB: img.Partitions.StateMiB, Options: append(o.cmdline(), vp.CmdlineOptions()...), Time: o.Time, WorkDir: work,
	}
	step := o.Log.Step("ISO")
	if err := isoimage.Build(spec, out); err != nil {
		return "", err
	}
	step.Done(fmt.Sprintf("%s, %s, volume %s, boot entries: %s", filepath.Base(out), fileSize(out), layout.ISOVolumeID,
		strings.Join([]string{isoimage.EntryLive, isoimage.EntryInstall, isoimage.EntryRescue}, ", ")))
	return out, nil
}
