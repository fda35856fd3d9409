// Package esp finds the EFI system partition by its GPT name
// (layout.PartESP) and mounts it. Stage 1 mounts it read-only for the
// initramfs hooks, stage 2 read-write at layout.ESPMount; both call Mount
// so the two agree on the options.
//
// The mount is vfat, root-only (umask=0077), never executable, with names
// as the FAT stores them (shortname=mixed), and read-write mounts are
// dirsync, so that a rename is on the disk when it returns (see spec). Every name Kestrel puts on the
// ESP is ASCII, so iocharset=ascii always does; the kernel's default
// (utf8) is asked for only when nls_utf8 is loaded.
//
// FAT has no journal: a power cut in the middle of a write (an upgrade
// writing a slot's kernel or boot entry) can leave a directory entry
// pointing at a free or shared cluster chain, and the kernel turns the
// read-write mount read-only (errors=remount-ro) on the first such error,
// after which no upgrade can write the ESP. So a read-write mount runs
// Options.Check on the device first: FsckFAT, Debian's fsck.fat in
// automatic mode, in stage 2, when the boot sector's dirty flag says the
// FAT was still mounted read-write when the machine stopped (Dirty: the
// kernel sets the flag at a read-write mount and clears it at a clean
// unmount; writes without a mount, as the image builder's and the
// installer's, leave it clear). What it repaired, and a check that failed,
// are warnings; the ESP is mounted either way. After a repair, the lost
// chains fsck.fat saved as FSCKnnnn.REC files are deleted (warned about
// one by one), so that repeated cuts do not fill the ESP.
//
// Limits: vfat only; the check runs only when the caller gives one (stage
// 1 has no fsck.fat, so its read-write mount to demote a refused slot is
// unchecked) and only repairs what fsck.fat -a repairs (an invalid boot
// sector is reported, not fixed; files it truncates lose their tail);
// the partition is found by GPT name, so a disk with only an MBR has no
// ESP here (see blockdev).
package esp

import (
	"os"
	"path/filepath"
	"regexp"
	"sync"
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
	// Name is the partition's GPT name; "" is layout.PartESP.
	Name string
	// Check, when set, checks and repairs the device before a read-write
	// mount (never before a read-only one). Its report and its error go
	// to Warn; neither stops the mount.
	Check Checker
	// Warn receives what Check repaired or why it failed; nil drops it.
	Warn func(format string, args ...any)
}

// Checker checks the FAT on the device node dev and repairs what it can.
// It returns what it repaired ("" when the filesystem was clean) and an
// error when the check could not run or left errors behind.
type Checker func(dev string) (repaired string, err error)

// Mount finds the partition named layout.PartESP among devs and mounts it
// at o.Target.
//
// Without nls_utf8 loaded, asking for the kernel's default iocharset runs
// the usermode modprobe helper (busybox's in the initramfs too) and fails,
// which costs up to a second: Mount asks for ASCII up front then. A mount
// without iocharset=ascii that fails anyway is retried with it; if that
// fails too, the first attempt's error is returned.
//
// A read-write mount with o.Check runs the check first (see Options),
// unless the boot sector says the FAT was cleanly unmounted (Dirty).
func Mount(devs []blockdev.Device, o Options, mount mounts.MountFunc) error {
	name := o.Name
	if name == "" {
		name = layout.PartESP
	}
	d, err := blockdev.ByPartName(devs, name)
	if err != nil {
		return err
	}
	dev := d.Path(o.Dev)
	repaired := false
	if !o.ReadOnly && o.Check != nil {
		// A FAT that was unmounted cleanly is not checked (fsck.fat was
		// ~0.2-0.5 s of every boot under TCG); one the kernel still marks
		// as mounted, or whose boot sector cannot be read, is.
		if dirty, err := Dirty(dev); err != nil || dirty {
			repaired = check(dev, o)
		}
	}
	ascii := !utf8Loaded(o.Sys)
	m := spec(dev, o.Target, o.ReadOnly, ascii)
	err = m.Do(mount)
	if err != nil && !ascii {
		m.Data += asciiOpt
		if m.Do(mount) == nil {
			err = nil
		}
	}
	if err == nil && repaired {
		removeSalvaged(o.Target, o.warn())
	}
	return err
}

// check runs o.Check on dev, reports to o.Warn and tells whether the
// check changed anything.
func check(dev string, o Options) bool {
	warn := o.warn()
	repaired, err := o.Check(dev)
	if repaired != "" {
		warn("ESP %s was damaged (an unclean shutdown?), repaired: %s", dev, repaired)
	}
	if err != nil {
		warn("ESP %s: check failed, mounted anyway (it turns read-only at the first FAT error): %v", dev, err)
	}
	return repaired != ""
}

func (o Options) warn() func(string, ...any) {
	if o.Warn == nil {
		return func(string, ...any) {}
	}
	return o.Warn
}

// salvaged matches the files fsck.fat -a saves lost cluster chains to.
// Compiled on first use, not at package init: stage 1 links this package
// and seldom needs it, and under qemu's TCG the first regexp compile of a
// process costs ~15 ms.
var salvaged = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^fsck[0-9]{4}\.rec$`) })

// removeSalvaged deletes the FSCKnnnn.REC files in the ESP's root after a
// repair. fsck.fat -a always saves lost cluster chains there (it has no
// switch to free them instead); on the ESP they are the pieces of a
// kernel, initramfs or boot entry whose write was cut, which the upgrade
// writes again whole, and kept they would fill the ESP cut by cut until
// no upgrade fits. Each removal is a warning naming the file and size.
func removeSalvaged(target string, warn func(string, ...any)) {
	entries, err := os.ReadDir(target)
	if err != nil {
		warn("ESP: %v", err)
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !salvaged().MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(target, e.Name())
		size := int64(-1)
		if st, err := e.Info(); err == nil {
			size = st.Size()
		}
		if err := os.Remove(p); err != nil {
			warn("ESP: remove what fsck.fat salvaged: %v", err)
			continue
		}
		warn("ESP: removed %s (%d bytes), a lost cluster chain fsck.fat saved", p, size)
	}
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
		// dirsync: vfat's rename writes the renamed file's directory
		// entry (its start cluster and size) only when that inode is
		// written back, and fsync of the directory does not do it; a cut
		// after temporary file, fsync, rename, fsync of the directory
		// then leaves the name pointing at no cluster or at the replaced
		// file's freed chain (TestUpgradePowerCut saw the running slot's
		// entry end up so). With dirsync the rename writes it at once.
		m.Flags |= syscall.MS_DIRSYNC
		m.Data += ",errors=remount-ro"
	}
	if ascii {
		m.Data += asciiOpt
	}
	return m
}
