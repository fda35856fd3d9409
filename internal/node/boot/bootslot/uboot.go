package bootslot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
	"github.com/kestrel-os/kestrel/internal/ubootab"
)

// Open returns the chain the image on the ESP mounted at dir was built
// with: UBoot when the U-Boot boot script is there, BLS otherwise.
// booted is the slot this system booted ("" if unknown).
func Open(dir, booted string) Chain {
	if _, err := os.Stat(filepath.Join(dir, layout.ESPBootScript)); err == nil {
		return UBoot{ESP: dir, Booted: booted}
	}
	return BLS{ESP: dir, Booted: booted}
}

// UBoot is the U-Boot script chain (internal/ubootab) on a mounted ESP:
// one state file holds the order and each slot's tries, the boot script
// counts them down, and every change here is one rewrite of that file
// (esp.WriteFile), so a power cut leaves the old state or the new one.
// A slot's entry file is written only while the state says the slot has
// nothing to boot.
type UBoot struct {
	ESP    string
	Booted string
}

func (c UBoot) statePath() string { return filepath.Join(c.ESP, layout.ESPABState) }

func (c UBoot) state() (ubootab.State, error) {
	data, err := os.ReadFile(c.statePath())
	if errors.Is(err, os.ErrNotExist) {
		// As the boot script does: every slot with an entry is good.
		st, err := ubootab.ParseState(nil)
		for _, s := range layout.Slots {
			st.Slots[s] = ubootab.Good
		}
		return st, err
	}
	if err != nil {
		return ubootab.State{}, fmt.Errorf("boot state: %w", err)
	}
	st, err := ubootab.ParseState(data)
	if err != nil {
		return st, fmt.Errorf("boot state %s: %w", c.statePath(), err)
	}
	return st, nil
}

func (c UBoot) writeState(st ubootab.State) error {
	if err := os.MkdirAll(filepath.Dir(c.statePath()), 0o755); err != nil {
		return fmt.Errorf("boot state: %w", err)
	}
	if err := esp.WriteFile(c.statePath(), bytes.NewReader(st.Render())); err != nil {
		return fmt.Errorf("boot state: %w", err)
	}
	return nil
}

// Slots reads the state file and the slots' entries. A slot the state
// names but whose entry file is missing or unreadable is empty: the
// script would fail to boot it.
func (c UBoot) Slots() ([]Slot, error) {
	st, err := c.state()
	if err != nil {
		return nil, err
	}
	entries := map[string]ubootab.Entry{}
	for _, name := range layout.Slots {
		if e, err := c.entry(name); err == nil {
			entries[name] = e
		} else if st.Slots[name] != "" {
			st.Slots[name] = "" // the script skips a slot without an entry too
		}
	}
	next := st.Next()
	var out []Slot
	for _, name := range layout.Slots {
		s := Slot{Name: name, State: Empty, Booted: name == c.Booted, File: layout.ESPABState}
		v := st.Slots[name]
		if e, ok := entries[name]; v != "" && ok {
			s.Version, s.Options = e.Version, cmdlineOptions(e.Cmdline)
			if left, trial := st.Tries(name); !trial {
				s.State = Good
			} else {
				s.State, s.TriesLeft, s.TriesDone = Trying, left, max(e.Tries-left, 0)
				if left == 0 {
					s.State, s.exhausted = Bad, true
					if s.Booted {
						s.State = Trying // booted on its last try
					}
				}
			}
			s.Next = name == next
		}
		out = append(out, s)
	}
	return out, nil
}

func (c UBoot) entry(slot string) (ubootab.Entry, error) {
	p := filepath.Join(c.ESP, ubootab.EntryPath(slot))
	data, err := os.ReadFile(p)
	if err != nil {
		return ubootab.Entry{}, fmt.Errorf("slot %s entry: %w", slot, err)
	}
	e, err := ubootab.ParseEntry(data)
	if err != nil {
		return e, fmt.Errorf("slot %s entry %s: %w", slot, p, err)
	}
	return e, nil
}

// cmdlineOptions is a command line without its kestrel.slot word.
func cmdlineOptions(cmdline string) []string {
	var opts []string
	for _, o := range strings.Fields(cmdline) {
		if !strings.HasPrefix(o, layout.CmdlineSlot+"=") {
			opts = append(opts, o)
		}
	}
	return opts
}

// Forget empties the slot in the state first (the script then never
// boots it), then removes its entry file.
func (c UBoot) Forget(slot string) error {
	st, err := c.state()
	if err != nil {
		return err
	}
	if st.Slots[slot] != "" {
		st.Slots[slot] = ""
		if err := c.writeState(st); err != nil {
			return fmt.Errorf("forget slot %s: %w", slot, err)
		}
	}
	if err := os.Remove(filepath.Join(c.ESP, ubootab.EntryPath(slot))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget slot %s: %w", slot, err)
	}
	return nil
}

// Offer writes the slot's entry while the state has it empty, then the
// state with the slot first and tries left (0: good).
func (c UBoot) Offer(e bls.Entry, tries int) error {
	if tries > ubootab.MaxTries {
		return fmt.Errorf("offer slot %s: %d tries: the boot script counts at most %d", e.Slot, tries, ubootab.MaxTries)
	}
	if err := c.Forget(e.Slot); err != nil {
		return err
	}
	ent := ubootab.Entry{Version: e.Version, Cmdline: e.Cmdline(), Tries: tries}
	p := filepath.Join(c.ESP, ubootab.EntryPath(e.Slot))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("offer slot %s: %w", e.Slot, err)
	}
	if err := esp.WriteFile(p, bytes.NewReader(ent.Render())); err != nil {
		return fmt.Errorf("offer slot %s: %w", e.Slot, err)
	}
	st, err := c.state()
	if err != nil {
		return err
	}
	st.Slots[e.Slot] = ubootab.Good
	if tries > 0 {
		st.Slots[e.Slot] = strconv.Itoa(tries)
	}
	st.First(e.Slot)
	return c.writeState(st)
}

// MarkGood sets the slot good in the state. A good slot is left alone.
func (c UBoot) MarkGood(slot string) error {
	s, st, err := c.slotState(slot)
	if err != nil {
		return err
	}
	switch s.State {
	case Good:
		return nil
	case Empty:
		return fmt.Errorf("mark slot %s good: it has no boot entry", slot)
	}
	st.Slots[slot] = ubootab.Good
	if err := c.writeState(st); err != nil {
		return fmt.Errorf("mark slot %s good: %w", slot, err)
	}
	return nil
}

// Prefer puts a good slot first in the order.
func (c UBoot) Prefer(slot string) error {
	s, st, err := c.slotState(slot)
	if err != nil {
		return err
	}
	if s.State != Good {
		return fmt.Errorf("slot %s is %s, not good: it cannot be booted on purpose", slot, s.State)
	}
	if s.Next {
		return nil
	}
	st.First(slot)
	return c.writeState(st)
}

// Demote sets the slot's tries to 0, so the script boots the other slot
// (or this one only when the other has nothing left either, as
// systemd-boot does with exhausted entries). from and to name the state
// file and the slot's value before and after.
func (c UBoot) Demote(slot string) (from, to string, err error) {
	s, st, err := c.slotState(slot)
	if err != nil {
		return "", "", err
	}
	if s.State == Empty {
		return "", "", fmt.Errorf("demote slot %s: it has nothing to boot in %s", slot, c.statePath())
	}
	key := fmt.Sprintf("%s AB_%s=", layout.ESPABState, slot)
	from = key + st.Slots[slot]
	if st.Slots[slot] == "0" {
		return from, from, nil
	}
	st.Slots[slot] = "0"
	if err := c.writeState(st); err != nil {
		return from, "", fmt.Errorf("demote slot %s: %w", slot, err)
	}
	return from, key + "0", nil
}

func (c UBoot) slotState(name string) (Slot, ubootab.State, error) {
	st, err := c.state()
	if err != nil {
		return Slot{}, st, err
	}
	slots, err := c.Slots()
	if err != nil {
		return Slot{}, st, err
	}
	for _, s := range slots {
		if s.Name == name {
			return s, st, nil
		}
	}
	return Slot{}, st, fmt.Errorf("no slot %q (slots are %s)", name, strings.Join(layout.Slots, ", "))
}
