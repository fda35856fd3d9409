// Package kexec lets a reboot skip the firmware and the boot loader: it
// loads the kernel, initramfs and command line of the slot the boot
// loader would boot next into the running kernel (kexec_file_load(2)),
// and counts that slot's try the way the loader would, so that
// power.Shutdown can end in reboot(2)'s LINUX_REBOOT_CMD_KEXEC. What it
// saves is the firmware's start (POST, device and disk discovery) and
// the loader: seconds on a NUC, minutes on some servers. What it costs
// is hashing the kernel and initramfs twice (the load, then the kernel's
// purgatory before it jumps): milliseconds where SHA-256 runs at
// hardware speed, several seconds under TCG, where `make bench` has the
// workloads down 8.4-9.2 s with kexec against 10.7-11.1 s through OVMF.
//
// Limits: the systemd-boot chain only (bootslot.BLS), and in practice
// x86_64: Debian's arm64 kernel is built without kexec_file_load
// (CONFIG_KEXEC_FILE), so the load fails with ENOSYS there and the
// reboot goes through the firmware. (u-root's kexec_load path for arm64,
// pkg/boot/linux.KexecLoad, takes its memory map from the device tree's
// memory nodes, which a UEFI boot's device tree does not have.) The
// U-Boot script chain counts its tries in the script and the Raspberry
// Pi's firmware prepares the device tree, so those reboot through the
// firmware; so does armv7. A kernel under lockdown (Secure Boot) loads
// only a kernel signed with a key it trusts, which Debian's are.
// Hardware the next kernel cannot take over without a reset (some GPUs,
// NICs with firmware state) is why this is the operator's choice
// (config.Section.KexecReboot), not the default. The try counted here
// is counted again by the loader if the kexec fails and the reboot
// falls back to the firmware.
package kexec

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
)

// Loader loads the next boot from a mounted ESP.
type Loader struct {
	ESP    string // where the ESP is mounted (layout.ESPMount)
	Booted string // the slot this system booted (kestrel.slot)
	// FileLoad is kexec_file_load(2) (FileLoad); tests record instead.
	FileLoad func(kernel, initrd *os.File, cmdline string) error
}

// Loaded is what Load put in place for the next boot.
type Loaded struct {
	Slot      string
	Trial     bool // the slot is on trial: this boot counted one of its tries
	TriesLeft int  // on trial: the tries left after this one
	Cmdline   string
}

// Load loads the kernel of the slot the loader would boot next, with its
// initramfs and its entry's command line, then counts its try. On an
// error nothing is counted and the reboot must go through the firmware.
func (l Loader) Load() (Loaded, error) {
	c, ok := bootslot.Open(l.ESP, l.Booted).(bootslot.BLS)
	if !ok {
		return Loaded{}, fmt.Errorf("the ESP at %s holds the U-Boot boot chain, whose script counts the tries", l.ESP)
	}
	next, err := c.Next()
	if err != nil {
		return Loaded{}, err
	}
	cmdline := bls.Entry{Slot: next.Name, Options: next.Options}.Cmdline() // as the entry has it
	kernel, err := os.Open(filepath.Join(l.ESP, bls.KernelPath(next.Name)))
	if err != nil {
		return Loaded{}, fmt.Errorf("slot %s: %w", next.Name, err)
	}
	defer kernel.Close()
	initrd, err := os.Open(filepath.Join(l.ESP, bls.InitrdPath(next.Name)))
	if err != nil {
		return Loaded{}, fmt.Errorf("slot %s: %w", next.Name, err)
	}
	defer initrd.Close()
	if err := l.FileLoad(kernel, initrd, cmdline); err != nil {
		return Loaded{}, fmt.Errorf("load slot %s's kernel %s: %w", next.Name, kernel.Name(), err)
	}
	// Counted after the load: a kernel that cannot be loaded must not
	// cost the slot a try it never got.
	took, err := c.Take()
	if err != nil {
		return Loaded{}, err
	}
	if took.Name != next.Name {
		return Loaded{}, fmt.Errorf("the slot to boot next changed from %s to %s while its kernel was loaded", next.Name, took.Name)
	}
	return Loaded{Slot: took.Name, Trial: took.State == bootslot.Trying, TriesLeft: took.TriesLeft, Cmdline: cmdline}, nil
}

// FileLoad is kexec_file_load(2). It is x/sys/unix's call rather than
// u-root's pkg/boot/kexec.FileLoad, the same one call, because that
// package also links its memory-map, device-tree and watchdog-daemon
// code (and lz4) into PID 1, which starts cold on every boot.
func FileLoad(kernel, initrd *os.File, cmdline string) error {
	return unix.KexecFileLoad(int(kernel.Fd()), int(initrd.Fd()), cmdline, 0)
}
