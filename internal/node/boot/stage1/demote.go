package stage1

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// DemoteEntry renames slot's boot entry on the ESP mounted at esp to an
// exhausted one, <prefix><slot>+0-<done>.conf, which systemd-boot sorts
// after every entry with tries left or no counter: the next boot falls
// back to the other slot. done is the count the loader has already
// written into the name (it counts this boot before starting it), or 1
// for an entry with no counter, a slot marked good, which the loader
// would otherwise retry for ever. It returns the old and new names
// relative to esp (equal when the entry was exhausted already) and syncs
// the ESP.
//
// One function on purpose: it belongs with the other entry renames
// (marking a slot good, arming a new one) in the bootslot package.
func DemoteEntry(esp, slot string) (from, to string, err error) {
	from, err = EntryFile(esp, slot)
	if err != nil {
		return "", "", err
	}
	left, done, _ := parseEntryName(filepath.Base(from), slot)
	if left == 0 && done > 0 {
		return from, from, nil
	}
	to = filepath.Join(layout.ESPEntriesDir, fmt.Sprintf("%s%s+0-%d.conf", layout.ESPEntryNamePrefix, slot, max(done, 1)))
	if err := os.Rename(filepath.Join(esp, from), filepath.Join(esp, to)); err != nil {
		return from, "", fmt.Errorf("demote boot entry: %w", err)
	}
	dir := filepath.Join(esp, layout.ESPEntriesDir)
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return from, to, fmt.Errorf("demote boot entry: sync %s: %w", dir, err)
	}
	return from, to, nil
}

// EntryFile returns the name, relative to esp, of slot's boot entry,
// whatever its counter says.
func EntryFile(esp, slot string) (string, error) {
	dir := filepath.Join(esp, layout.ESPEntriesDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("boot entries: %w", err)
	}
	for _, e := range ents {
		if _, _, ok := parseEntryName(e.Name(), slot); ok {
			return filepath.Join(layout.ESPEntriesDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("boot entries: no entry for slot %s in %s", slot, dir)
}

// parseEntryName reads a Kestrel entry file name for slot:
// <prefix><slot>[+<left>[-<done>]].conf (done 0 when absent, left -1
// when there is no counter).
func parseEntryName(name, slot string) (left, done int, ok bool) {
	rest, ok := strings.CutPrefix(name, layout.ESPEntryNamePrefix+slot)
	if !ok {
		return 0, 0, false
	}
	rest, ok = strings.CutSuffix(rest, ".conf")
	if !ok {
		return 0, 0, false
	}
	if rest == "" {
		return -1, 0, true
	}
	rest, ok = strings.CutPrefix(rest, "+")
	if !ok {
		return 0, 0, false
	}
	l, d, hasDone := strings.Cut(rest, "-")
	var err error
	if left, err = strconv.Atoi(l); err != nil || left < 0 {
		return 0, 0, false
	}
	if hasDone {
		if done, err = strconv.Atoi(d); err != nil || done < 0 {
			return 0, 0, false
		}
	}
	return left, done, true
}
