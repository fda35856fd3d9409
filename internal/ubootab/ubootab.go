// Package ubootab is the A/B boot chain for boards that boot through a
// U-Boot script instead of systemd-boot (armv7, Raspberry Pi, any board
// whose U-Boot cannot count boots): the boot script's source, the state
// file it keeps on the ESP, and each slot's entry file. The builder writes
// all three; the node (internal/node/boot/bootslot) reads and rewrites the
// state and the entries.
//
// The state file (layout.ESPABState) is U-Boot's plain-text environment
// format, read with `env import -t` and written back with `env export -t`
// and `fatwrite`:
//
//	AB_ORDER=a b     slots in boot order
//	AB_a=good        a good slot: booted without counting
//	AB_b=2           a slot on trial with 2 tries left (0: exhausted)
//
// A slot with no AB_<slot> line (or an empty one) has nothing bootable.
// The script boots the first slot in AB_ORDER that has an entry file and
// is good or has tries left, decrementing its count before it boots (as systemd-boot does), and
// when every slot is exhausted the first one that has an entry at all (a
// box with no good slot left keeps trying rather than stop at a prompt).
// Marking good, offering and preferring a slot are each one rewrite of
// this one file, so a power cut leaves either the old or the new state.
// The script writes the file (fatwrite, in place) only when it counts a
// try, never when it boots a good slot, so a box that boots normally does
// not write its FAT at all before Linux. A missing state file (a cut
// during that write) counts every slot with an entry as good, here and
// in the script, rather than leave the box at U-Boot's prompt.
//
// A slot's entry file (/kestrel/<slot>/entry.env, same format) holds what
// a BLS entry holds: the release version, the kernel command line and the
// number of tries it was offered with.
//
// Limits: two slots, a and b (U-Boot's shell has no indirect variable
// names, so the script spells each slot out); at most 9 tries (setexpr
// computes in hex; one digit reads the same either way); device trees are
// shared by both slots (/dtbs on the ESP, or the one the firmware passes),
// not per slot; the script does not verify what it loads.
package ubootab

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// Good is a slot's state value for a good slot.
const Good = "good"

// MaxTries is the largest try count the script counts down correctly.
const MaxTries = 9

// State is the state file: slot order and each slot's standing.
type State struct {
	Order []string          // slots in boot order
	Slots map[string]string // slot -> Good, a try count, or "" (empty)
}

// ParseState reads a state file. Unknown lines are ignored (U-Boot may
// add none, but a person editing the file might); a trailing NUL, which
// `env export -t` writes, ends the text. A missing or incomplete order is
// completed with the slots it leaves out, in layout order.
func ParseState(data []byte) (State, error) {
	s := State{Slots: map[string]string{}}
	vars, err := parseEnv(data)
	if err != nil {
		return s, err
	}
	for _, w := range strings.Fields(vars["AB_ORDER"]) {
		if slices.Contains(layout.Slots, w) && !slices.Contains(s.Order, w) {
			s.Order = append(s.Order, w)
		}
	}
	for _, slot := range layout.Slots {
		if !slices.Contains(s.Order, slot) {
			s.Order = append(s.Order, slot)
		}
		v := vars["AB_"+slot]
		if v != "" && v != Good {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return s, fmt.Errorf("%s: AB_%s=%q: want %q or a try count", layout.ESPABState, slot, v, Good)
			}
		}
		s.Slots[slot] = v
	}
	return s, nil
}

// Render writes the state in the format `env import -t` reads.
func (s State) Render() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "AB_ORDER=%s\n", strings.Join(s.Order, " "))
	for _, slot := range layout.Slots {
		fmt.Fprintf(&b, "AB_%s=%s\n", slot, s.Slots[slot])
	}
	return []byte(b.String())
}

// Tries returns a slot's tries left and whether it is on trial (false for
// a good or an empty slot).
func (s State) Tries(slot string) (int, bool) {
	n, err := strconv.Atoi(s.Slots[slot])
	return n, err == nil
}

// Next is the slot the script boots next, by the rules in the package
// comment, or "" when no slot has anything to boot.
func (s State) Next() string {
	for _, slot := range s.Order {
		if v := s.Slots[slot]; v == Good {
			return slot
		} else if n, ok := s.Tries(slot); ok && n > 0 {
			return slot
		}
	}
	for _, slot := range s.Order {
		if s.Slots[slot] != "" {
			return slot
		}
	}
	return ""
}

// First moves slot to the front of the order.
func (s *State) First(slot string) {
	order := []string{slot}
	for _, o := range s.Order {
		if o != slot {
			order = append(order, o)
		}
	}
	s.Order = order
}

// Entry is one slot's entry file.
type Entry struct {
	Version string
	Cmdline string // the whole kernel command line, kestrel.slot included
	Tries   int    // tries it was offered with (0: written good)
}

// EntryPath is the slot's entry file on the ESP, e.g. /kestrel/a/entry.env.
func EntryPath(slot string) string { return path.Join(layout.ESPSlotDir, slot, layout.ESPEntryEnvName) }

// Render writes the entry.
func (e Entry) Render() []byte {
	return []byte(fmt.Sprintf("kestrel_version=%s\nkestrel_tries=%d\nkestrel_args=%s\n", e.Version, e.Tries, e.Cmdline))
}

// ParseEntry reads an entry file.
func ParseEntry(data []byte) (Entry, error) {
	vars, err := parseEnv(data)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Version: vars["kestrel_version"], Cmdline: vars["kestrel_args"]}
	if t := vars["kestrel_tries"]; t != "" {
		if e.Tries, err = strconv.Atoi(t); err != nil {
			return e, fmt.Errorf("kestrel_tries=%q: not a number", t)
		}
	}
	if e.Cmdline == "" {
		return e, fmt.Errorf("kestrel_args: missing (the kernel command line)")
	}
	return e, nil
}

// parseEnv reads name=value lines, as `env import -t` does: no quoting, a
// value runs to the end of the line, '#' lines are comments.
func parseEnv(data []byte) (map[string]string, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d: %q is not name=value", n, line)
		}
		vars[k] = v
	}
	return vars, sc.Err()
}

// Script is the boot script's source for mkimage (-T script). kernelCmd is
// U-Boot's boot command for the kernel format: "booti" (arm64 Image) or
// "bootz" (arm zImage).
//
// The state is read into and written from ${kernel_addr_r}, not
// ${scriptaddr}, where this script itself sits while it runs; the kernel
// is loaded there only after the state has been written. The device tree
// is the one the firmware handed to U-Boot (${fdt_addr}: the Raspberry Pi
// firmware's, with its overlays applied), else /dtbs/${fdtfile} from the
// ESP when U-Boot names one, else U-Boot's own (qemu's).
func Script(kernelCmd string) ([]byte, error) {
	if kernelCmd != "booti" && kernelCmd != "bootz" {
		return nil, fmt.Errorf("boot script: kernel command %q: want booti or bootz", kernelCmd)
	}
	var b strings.Builder
	b.WriteString(`# Kestrel A/B boot script, generated by kestrel-build (internal/ubootab).
# State: ` + layout.ESPABState + ` (AB_ORDER, AB_<slot>=good|tries left).
setenv AB_ORDER "a b"
setenv AB_a
setenv AB_b
if load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} ` + layout.ESPABState + `; then env import -t ${kernel_addr_r} ${filesize}; else echo "kestrel: no ` + layout.ESPABState + `: every slot with an entry counts as good"; setenv AB_a ` + Good + `; setenv AB_b ` + Good + `; fi
setenv kslot
setenv kwrite
for s in ${AB_ORDER}; do
`)
	for _, slot := range layout.Slots {
		fmt.Fprintf(&b, `  if test -z "${kslot}" && test "${s}" = %[1]s && test -e ${devtype} ${devnum}:${distro_bootpart} %[3]s; then
    if test "${AB_%[1]s}" = %[2]s; then setenv kslot %[1]s; elif test -n "${AB_%[1]s}" && test ${AB_%[1]s} -gt 0; then setexpr AB_%[1]s ${AB_%[1]s} - 1; setenv kslot %[1]s; setenv kwrite 1; fi
  fi
`, slot, Good, EntryPath(slot))
	}
	b.WriteString(`done
if test -z "${kslot}"; then
  for s in ${AB_ORDER}; do
`)
	for _, slot := range layout.Slots {
		fmt.Fprintf(&b, "    if test -z \"${kslot}\" && test \"${s}\" = %[1]s && test -n \"${AB_%[1]s}\" && test -e ${devtype} ${devnum}:${distro_bootpart} %[2]s; then setenv kslot %[1]s; echo \"kestrel: every slot's tries are used up, booting %[1]s anyway\"; fi\n", slot, EntryPath(slot))
	}
	b.WriteString(`  done
fi
if test -z "${kslot}"; then echo "kestrel: no slot to boot in ` + layout.ESPABState + `"; exit; fi
if test -n "${kwrite}"; then
  env export -t ${kernel_addr_r} AB_ORDER AB_a AB_b
  fatwrite ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} ` + layout.ESPABState + ` ${filesize}
fi
echo "kestrel: slot ${kslot} (a=${AB_a} b=${AB_b})"
load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} ` + layout.ESPSlotDir + `/${kslot}/` + layout.ESPEntryEnvName + `
env import -t ${kernel_addr_r} ${filesize}
setenv bootargs "${kestrel_args}"
load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} ` + layout.ESPSlotDir + `/${kslot}/` + layout.ESPKernelName + `
load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} ` + layout.ESPSlotDir + `/${kslot}/` + layout.ESPInitrdName + `
setenv kinitrd ${ramdisk_addr_r}:${filesize}
setenv kfdt ${fdtcontroladdr}
if test -n "${fdtfile}" && load ${devtype} ${devnum}:${distro_bootpart} ${fdt_addr_r} /dtbs/${fdtfile}; then setenv kfdt ${fdt_addr_r}; fi
if test -n "${fdt_addr}"; then setenv kfdt ${fdt_addr}; fi
`)
	fmt.Fprintf(&b, "%s ${kernel_addr_r} ${kinitrd} ${kfdt}\n", kernelCmd)
	b.WriteString(`echo "kestrel: slot ${kslot} did not boot"
`)
	return []byte(b.String()), nil
}
