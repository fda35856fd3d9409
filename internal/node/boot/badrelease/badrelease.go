// Package badrelease remembers the releases this node rolled back from, on
// the state partition, so that an upgrade to one of them is refused (unless
// forced) and the cluster can be told (the Node annotation
// kestrel.io/rolled-back-from).
//
// A release counts as bad when the node boots a slot while the other slot's
// boot entry has run out of tries: the loader gave up on it. Detect turns
// that observation into a record; it is idempotent, so stage 2 calls it on
// every boot.
//
// Limits: the list only grows (a forced upgrade to a bad version that then
// proves good removes it with Forgive); versions are compared as written.
package badrelease

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// Path is the record on the node (on the state partition through /var).
const Path = "/var/lib/kestrel/bad-releases.json"

// Record is one release the node gave up on.
type Record struct {
	Version string    `json:"version"`
	Slot    string    `json:"slot"`
	When    time.Time `json:"when"`
	Reason  string    `json:"reason"`
}

// Load reads the records; a missing file is none.
func Load(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bad releases: %w", err)
	}
	var rs []Record
	if err := json.Unmarshal(data, &rs); err != nil {
		return nil, fmt.Errorf("bad releases: %s: %w", path, err)
	}
	return rs, nil
}

// Contains reports whether version is recorded as bad.
func Contains(rs []Record, version string) bool {
	return slices.ContainsFunc(rs, func(r Record) bool { return r.Version == version })
}

// Latest is the most recently recorded bad version, "" if none.
func Latest(rs []Record) string {
	if len(rs) == 0 {
		return ""
	}
	return rs[len(rs)-1].Version
}

// Detect records the version in a slot the loader gave up on (state Bad)
// while another slot booted. It returns the newly recorded version, "" when
// there was nothing new.
func Detect(path string, slots []bootslot.Slot, now time.Time) (string, error) {
	booted := slices.IndexFunc(slots, func(s bootslot.Slot) bool { return s.Booted })
	if booted < 0 {
		return "", nil
	}
	rs, err := Load(path)
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if s.Booted || s.State != bootslot.Bad || s.Version == "" || Contains(rs, s.Version) || s.Version == slots[booted].Version {
			continue
		}
		rs = append(rs, Record{Version: s.Version, Slot: s.Name, When: now.UTC(),
			Reason: fmt.Sprintf("slot %s ran out of boot tries; booted slot %s (%s) instead", s.Name, slots[booted].Name, slots[booted].Version)})
		if err := save(path, rs); err != nil {
			return "", err
		}
		return s.Version, nil
	}
	return "", nil
}

// Forgive removes version from the records (it booted good after all).
func Forgive(path, version string) error {
	rs, err := Load(path)
	if err != nil || !Contains(rs, version) {
		return err
	}
	rs = slices.DeleteFunc(rs, func(r Record) bool { return r.Version == version })
	return save(path, rs)
}

func save(path string, rs []Record) error {
	data, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return fmt.Errorf("bad releases: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o644, atomicfile.NoChown, atomicfile.NoChown); err != nil {
		return fmt.Errorf("bad releases: %w", err)
	}
	return nil
}
