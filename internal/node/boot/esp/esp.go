// Package esp finds the EFI system partition by its GPT name
// (layout.PartESP) and mounts it. Stage 1 mounts it read-only for the
// initramfs hooks, stage 2 read-write at layout.ESPMount; both call Mount
// so the two agree on the options.
//
// The mount is vfat, root-only (umask=0077), never executable, with names
// as the FAT stores them (shortname=mixed). Every name Kestrel puts on the
// ESP is ASCII, so iocharset=ascii always does; the kernel's default
// (utf8) is asked for only when nls_utf8 is loaded.
//
// Limits: vfat only; no fsck (a read-write mount turns read-only on the
// first FAT error instead); the partition is found by GPT name, so a disk
// with only an MBR has no ESP here (see blockdev).
package esp

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

// Options say where and how to mount the ESP.
type Options struct {
	Sys      string // sysfs mount point, normally "/sys"
	Dev      string // directory of the device nodes, normally "/dev"
	Target   string // mount point; created 0700 when missing
	ReadOnly bool
}

// Mount finds the partition named layout.PartESP among devs and mounts it
// at o.Target.
//
// Without nls_utf8 loaded, asking for the kernel's default iocharset runs
// the usermode modprobe helper (busybox's in the initramfs too) and fails,
// which costs up to a second: Mount asks for ASCII up front then. A mount
// without iocharset=ascii that fails anyway is retried with it; if that
// fails too, the first attempt's error is returned.
func Mount(devs []blockdev.Device, o Options, mount mounts.MountFunc) error {
	d, err := blockdev.ByPartName(devs, layout.PartESP)
	if err != nil {
		return err
	}
	ascii := !utf8Loaded(o.Sys)
	m := spec(d.Path(o.Dev), o.Target, o.ReadOnly, ascii)
	err = m.Do(mount)
	if err == nil || ascii {
		return err
	}
	m.Data += asciiOpt
	if m.Do(mount) != nil {
		return err
	}
	return nil
}

// utf8Loaded reports whether the nls_utf8 module is loaded. A kernel with
// nls_utf8 built in has no /sys/module/nls_utf8, so it is reported
// missing: ASCII then, which works as well.
func utf8Loaded(sys string) bool {
	_, err := os.Stat(filepath.Join(sys, "module", "nls_utf8"))
	return err == nil
}

const asciiOpt = ",iocharset=ascii"

func spec(dev, target string, readOnly, ascii bool) mounts.Mount {
	m := mounts.Mount{Source: dev, Target: target, FSType: "vfat", Mode: 0o700,
		Flags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC | syscall.MS_NOATIME,
		Data:  "umask=0077,shortname=mixed"}
	if readOnly {
		m.Flags |= syscall.MS_RDONLY
	} else {
		m.Data += ",errors=remount-ro"
	}
	if ascii {
		m.Data += asciiOpt
	}
	return m
}
