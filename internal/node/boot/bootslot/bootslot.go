// Package bootslot is the A/B boot chain as the node sees it: which slot
// holds which release, which one the firmware's boot loader tries next, how
// many tries a new slot has left, and the three changes an upgrade makes to
// it (forget a slot, offer a slot for trial, declare the booted slot good),
// plus an explicit rollback.
//
// Chain is the interface; BLS implements it for systemd-boot's Boot Loader
// Specification entries with boot counting on the ESP (x86_64 and arm64
// UEFI), UBoot (uboot.go) for the U-Boot script chain of internal/ubootab
// (armv7, Raspberry Pi). Open picks the one the image was built with.
//
// How BLS orders the slots: systemd-boot sorts entries whose tries are
// exhausted last, then by sort-key (ascending), then by version (newest
// first). Kestrel's sort keys are "kestrel-NNNNN" (bls.SortKey is the
// builder's first); the slot to boot next gets a key below the other
// entry's, so the choice never depends on version strings (a forced
// downgrade still boots) and the other entry, usually the running slot's,
// is never rewritten: on FAT a rename is two directory writes, and a power
// cut between them could cost the one good entry. A slot's entry file name carries its counter:
// kestrel-b+3.conf (3 tries left), kestrel-b+1-2.conf (1 left, 2 used),
// kestrel-b+0-3.conf (exhausted: bad), kestrel-b.conf (good).
//
// Every change is a new file written to a temporary name, synced and renamed,
// then the directory synced, so a power cut leaves either the old or the
// new entry. Limits: FAT has no atomic rename-over; a crash between removing
// an old entry and renaming a new one leaves no entry for that slot, which
// boots the other slot, never a half-written one.
package bootslot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
)

// sortKeyBelow returns the Kestrel sort key that sorts just before every
// key in keys (fixed-width numbers, so string order is number order).
func sortKeyBelow(keys ...string) string {
	low := sortKeyNumber(bls.SortKey)
	for _, k := range keys {
		if n, ok := strings.CutPrefix(k, "kestrel-"); ok {
			if v, err := strconv.Atoi(n); err == nil && len(n) == 5 {
				low = min(low, v)
			}
		}
	}
	return fmt.Sprintf("kestrel-%05d", max(low-1, 0))
}

func sortKeyNumber(k string) int {
	v, _ := strconv.Atoi(strings.TrimPrefix(k, "kestrel-"))
	return v
}

// DefaultTries is how often the loader tries a newly written slot before it
// falls back to the other.
const DefaultTries = 3

// State is a slot's standing.
type State string

const (
	Empty  State = "empty"  // no boot entry: nothing bootable (or being written)
	Good   State = "good"   // booted and declared good
	Trying State = "trying" // offered for trial, tries left (0: booted on its last try)
	Bad    State = "bad"    // tries exhausted: the loader skips it
)

// Slot is one slot's entry as found on the ESP.
type Slot struct {
	Name      string   `json:"name"`
	State     State    `json:"state"`
	Version   string   `json:"version,omitempty"`
	TriesLeft int      `json:"tries_left,omitempty"`
	TriesDone int      `json:"tries_done,omitempty"`
	Next      bool     `json:"next"` // the loader boots it next (first in order)
	Booted    bool     `json:"booted"`
	SortKey   string   `json:"-"`
	Options   []string `json:"-"` // kernel command line without kestrel.slot
	File      string   `json:"-"` // entry file name under the entries directory

	exhausted bool // +0: the loader skips it
}

// Chain is a boot chain with A/B slots.
type Chain interface {
	// Slots lists both slots, the booted one marked.
	Slots() ([]Slot, error)
	// Forget removes a slot's entry so the loader never boots it while
	// it is being rewritten.
	Forget(slot string) error
	// Offer writes the slot's entry with tries and makes it the next to
	// boot; the other slot stays as it is, second.
	Offer(e bls.Entry, tries int) error
	// MarkGood drops the booted slot's counter.
	MarkGood(slot string) error
	// Prefer makes a slot with a good entry the next to boot.
	Prefer(slot string) error
	// Demote makes a slot's entry exhausted, so the loader skips it; it
	// returns where on the ESP that was recorded, before and after (for
	// BLS the entry's old and new paths).
	Demote(slot string) (from, to string, err error)
}

// BLS is the systemd-boot chain on a mounted ESP.
type BLS struct {
	ESP    string // where the ESP is mounted
	Booted string // the slot this system booted (kestrel.slot), "" if unknown
}

// entryName matches a slot's boot entry file name, with systemd-boot's
// boot counting suffix (+left[-done]). Compiled on first use, as esp's
// salvaged is.
var entryName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(layout.ESPEntryNamePrefix) + `([a-z])(?:\+(\d+)(?:-(\d+))?)?\.conf$`)
})

func (c BLS) dir() string { return filepath.Join(c.ESP, layout.ESPEntriesDir) }

// Slots reads the entries directory. More than one entry for a slot (a crash
// between writing one and removing another) is resolved to the one the
// loader would boot first and the rest are ignored.
func (c BLS) Slots() ([]Slot, error) {
	des, err := os.ReadDir(c.dir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("boot entries: %w", err)
	}
	found := map[string]Slot{}
	for _, de := range des {
		m := entryName().FindStringSubmatch(de.Name())
		if m == nil || !slices.Contains(layout.Slots, m[1]) {
			continue
		}
		s, err := c.read(de.Name(), m)
		if err != nil {
			return nil, err
		}
		if old, ok := found[s.Name]; !ok || rank(s) < rank(old) {
			found[s.Name] = s
		}
	}
	var out []Slot
	for _, name := range layout.Slots {
		s, ok := found[name]
		if !ok {
			s = Slot{Name: name, State: Empty}
		}
		s.Booted = name == c.Booted
		if s.Booted && s.State == Bad {
			// The loader booted it on its last try (it renamed +1-n to
			// +0-n+1 first): on trial still, not given up.
			s.State = Trying
		}
		out = append(out, s)
	}
	// The loader's choice: not exhausted first, then sort key.
	first := -1
	for i, s := range out {
		if s.State == Empty || s.exhausted {
			continue
		}
		if first < 0 || s.SortKey < out[first].SortKey {
			first = i
		}
	}
	if first >= 0 {
		out[first].Next = true
	}
	return out, nil
}

func rank(s Slot) int {
	switch s.State {
	case Good:
		return 0
	case Trying:
		return 1
	}
	return 2
}

func (c BLS) read(name string, m []string) (Slot, error) {
	s := Slot{Name: m[1], State: Good, File: name}
	if m[2] != "" {
		s.TriesLeft, _ = strconv.Atoi(m[2])
		s.TriesDone, _ = strconv.Atoi(m[3])
		s.State = Trying
		if s.TriesLeft == 0 {
			s.State, s.exhausted = Bad, true
		}
	}
	data, err := os.ReadFile(filepath.Join(c.dir(), name))
	if err != nil {
		return Slot{}, fmt.Errorf("boot entry %s: %w", name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch k {
		case "version":
			s.Version = strings.TrimSpace(v)
		case "sort-key":
			s.SortKey = strings.TrimSpace(v)
		case "options":
			for _, o := range strings.Fields(v) {
				if !strings.HasPrefix(o, layout.CmdlineSlot+"=") {
					s.Options = append(s.Options, o)
				}
			}
		}
	}
	return s, nil
}

// Forget removes every entry of slot.
func (c BLS) Forget(slot string) error {
	des, err := os.ReadDir(c.dir())
	if err != nil {
		return fmt.Errorf("boot entries: %w", err)
	}
	removed := false
	for _, de := range des {
		if m := entryName().FindStringSubmatch(de.Name()); m != nil && m[1] == slot {
			if err := os.Remove(filepath.Join(c.dir(), de.Name())); err != nil {
				return fmt.Errorf("forget slot %s: %w", slot, err)
			}
			removed = true
		}
	}
	if removed {
		return syncDir(c.dir())
	}
	return nil
}

// Offer writes slot e.Slot's entry with tries (0: a good entry) as the next
// to boot: its sort key is below the other slot's, whose entry is left
// alone.
func (c BLS) Offer(e bls.Entry, tries int) error {
	slots, err := c.Slots()
	if err != nil {
		return err
	}
	if err := c.Forget(e.Slot); err != nil {
		return err
	}
	e.Tries = tries
	return c.write(e, sortKeyBelow(otherKeys(slots, e.Slot)...))
}

// otherKeys are the sort keys of the entries of slots other than slot.
func otherKeys(slots []Slot, slot string) []string {
	var keys []string
	for _, s := range slots {
		if s.Name != slot && s.State != Empty {
			keys = append(keys, s.SortKey)
		}
	}
	return keys
}

// MarkGood renames the slot's counting entry to its plain name. A slot that
// is already good is left alone.
func (c BLS) MarkGood(slot string) error {
	s, err := c.slot(slot)
	if err != nil {
		return err
	}
	switch s.State {
	case Good:
		return nil
	case Empty:
		return fmt.Errorf("mark slot %s good: it has no boot entry", slot)
	}
	good := layout.ESPEntryNamePrefix + slot + ".conf"
	if err := os.Rename(filepath.Join(c.dir(), s.File), filepath.Join(c.dir(), good)); err != nil {
		return fmt.Errorf("mark slot %s good: %w", slot, err)
	}
	return syncDir(c.dir())
}

// Next returns the slot the loader boots next; with none to boot (no
// entry, or every one exhausted), an error.
func (c BLS) Next() (Slot, error) {
	slots, err := c.Slots()
	if err != nil {
		return Slot{}, err
	}
	i := slices.IndexFunc(slots, func(s Slot) bool { return s.Next })
	if i < 0 {
		return Slot{}, fmt.Errorf("no slot to boot next in %s", c.dir())
	}
	return slots[i], nil
}

// Take does what systemd-boot does when it starts the next slot, for a
// reboot that starts the kernel itself (kexec) instead of going through
// the firmware and the loader: it picks the slot the loader would boot
// next and counts one try of it when it is on trial, renaming
// kestrel-b+2-1.conf to kestrel-b+1-2.conf, so that a release that never
// comes up healthy still runs out of tries and falls back. A good slot's
// entry is left as it is. With no slot to boot (none, or every one
// exhausted, where the loader boots the first anyway) it returns an
// error: that reboot belongs to the firmware.
func (c BLS) Take() (Slot, error) {
	s, err := c.Next()
	if err != nil {
		return Slot{}, err
	}
	if s.State != Trying {
		return s, nil
	}
	name := fmt.Sprintf("%s%s+%d-%d.conf", layout.ESPEntryNamePrefix, s.Name, s.TriesLeft-1, s.TriesDone+1)
	if err := os.Rename(filepath.Join(c.dir(), s.File), filepath.Join(c.dir(), name)); err != nil {
		return Slot{}, fmt.Errorf("count a try of slot %s: %w", s.Name, err)
	}
	s.File, s.TriesLeft, s.TriesDone = name, s.TriesLeft-1, s.TriesDone+1
	return s, syncDir(c.dir())
}

// Prefer makes slot the next to boot; it must hold a good entry.
func (c BLS) Prefer(slot string) error {
	slots, err := c.Slots()
	if err != nil {
		return err
	}
	var target *Slot
	for i := range slots {
		if slots[i].Name == slot {
			target = &slots[i]
		}
	}
	if target == nil || target.State != Good {
		st := Empty
		if target != nil {
			st = target.State
		}
		return fmt.Errorf("slot %s is %s, not good: it cannot be booted on purpose", slot, st)
	}
	if target.Next {
		return nil
	}
	// Only the target is rewritten (it is not running: the running slot
	// is the one that boots next now).
	return c.rewrite(*target, sortKeyBelow(otherKeys(slots, slot)...))
}

// Demote renames the slot's entry to an exhausted one,
// <prefix><slot>+0-<done>.conf, which systemd-boot sorts after every entry
// with tries left or no counter, so the next boot falls back to the other
// slot. done is the count the loader already wrote into the name (it
// counts a boot before starting it), or 1 for an entry without a counter
// (a good slot, which the loader would otherwise retry for ever). An
// exhausted entry is left as it is.
func (c BLS) Demote(slot string) (from, to string, err error) {
	s, err := c.slot(slot)
	if err != nil {
		return "", "", err
	}
	if s.State == Empty {
		return "", "", fmt.Errorf("demote slot %s: it has no boot entry in %s", slot, c.dir())
	}
	from = path.Join(layout.ESPEntriesDir, s.File)
	if s.exhausted || (s.TriesLeft == 0 && s.TriesDone > 0) {
		return from, from, nil
	}
	name := fmt.Sprintf("%s%s+0-%d.conf", layout.ESPEntryNamePrefix, slot, max(s.TriesDone, 1))
	if err := os.Rename(filepath.Join(c.dir(), s.File), filepath.Join(c.dir(), name)); err != nil {
		return from, "", fmt.Errorf("demote slot %s: %w", slot, err)
	}
	return from, path.Join(layout.ESPEntriesDir, name), syncDir(c.dir())
}

func (c BLS) slot(name string) (Slot, error) {
	slots, err := c.Slots()
	if err != nil {
		return Slot{}, err
	}
	for _, s := range slots {
		if s.Name == name {
			return s, nil
		}
	}
	return Slot{}, fmt.Errorf("no slot %q (slots are %s)", name, strings.Join(layout.Slots, ", "))
}

// rewrite writes s's entry again under the same file name with another
// sort key (its counter unchanged).
func (c BLS) rewrite(s Slot, sortKey string) error {
	e := bls.Entry{Slot: s.Name, Version: s.Version, Options: s.Options}
	return c.writeFile(s.File, render(e, sortKey))
}

func (c BLS) write(e bls.Entry, sortKey string) error {
	return c.writeFile(filepath.Base(e.FileName()), render(e, sortKey))
}

func render(e bls.Entry, sortKey string) []byte {
	return bytes.Replace(e.Render(), []byte("sort-key "+bls.SortKey+"\n"), []byte("sort-key "+sortKey+"\n"), 1)
}

// writeFile replaces name in the entries directory (esp.WriteFile).
func (c BLS) writeFile(name string, data []byte) error {
	if err := os.MkdirAll(c.dir(), 0o755); err != nil {
		return fmt.Errorf("boot entries: %w", err)
	}
	if err := esp.WriteFile(filepath.Join(c.dir(), name), bytes.NewReader(data)); err != nil {
		return fmt.Errorf("boot entry: %w", err)
	}
	return nil
}

func syncDir(dir string) error { return esp.SyncDir(dir) }
