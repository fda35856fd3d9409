// Package bls renders systemd-boot's configuration: loader.conf and Boot
// Loader Specification type-1 entries for Kestrel's slots, with the file
// names (package layout) that stage 2 and the upgrader rename for boot
// counting.
//
// Limits: only the keys Kestrel uses (title, version, sort-key, linux,
// initrd, options); no devicetree, no efi stubs, no parsing of entries.
package bls

import (
	"fmt"
	"path"
	"strings"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// SortKey is the sort key of an image's first entry. systemd-boot sorts
// entries by sort key (ascending) before version; the node's bootslot
// package gives a slot it offers a lower "kestrel-NNNNN" key than the
// other slot's, so the slot to boot next never depends on versions.
const SortKey = "kestrel-50000"

// LoaderConf is loader/loader.conf: boot at once, no default (a default
// naming one slot would pin an exhausted entry and rollback would never
// happen), no command-line editor (the console would be a root shell away).
func LoaderConf() []byte {
	return []byte("timeout 0\nconsole-mode keep\neditor no\n")
}

// Entry is one slot's boot entry.
type Entry struct {
	Slot    string   // a or b
	Version string   // Kestrel release in the slot
	Options []string // kernel command line; kestrel.slot=<slot> is added
	// Tries, when > 0, names the file <prefix><slot>+<tries>.conf so that
	// systemd-boot counts boot attempts down.
	Tries int
}

// KernelPath is the slot's kernel on the ESP, e.g. /kestrel/a/vmlinuz.
func KernelPath(slot string) string {
	return path.Join(layout.ESPSlotDir, slot, layout.ESPKernelName)
}

// InitrdPath is the slot's initramfs on the ESP, e.g. /kestrel/a/initrd.
func InitrdPath(slot string) string {
	return path.Join(layout.ESPSlotDir, slot, layout.ESPInitrdName)
}

// FileName is the entry's path on the ESP, e.g.
// /loader/entries/kestrel-a.conf or /loader/entries/kestrel-b+3.conf.
func (e Entry) FileName() string {
	name := layout.ESPEntryNamePrefix + e.Slot
	if e.Tries > 0 {
		name += fmt.Sprintf("+%d", e.Tries)
	}
	return path.Join(layout.ESPEntriesDir, name+".conf")
}

// Cmdline is the entry's full kernel command line.
func (e Entry) Cmdline() string {
	return strings.Join(append(append([]string(nil), e.Options...), layout.CmdlineSlot+"="+e.Slot), " ")
}

// Render returns the entry file's contents.
func (e Entry) Render() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "title Kestrel %s (slot %s)\n", e.Version, e.Slot)
	fmt.Fprintf(&b, "version %s\n", e.Version)
	fmt.Fprintf(&b, "sort-key %s\n", SortKey)
	fmt.Fprintf(&b, "linux %s\n", KernelPath(e.Slot))
	fmt.Fprintf(&b, "initrd %s\n", InitrdPath(e.Slot))
	fmt.Fprintf(&b, "options %s\n", e.Cmdline())
	return []byte(b.String())
}
