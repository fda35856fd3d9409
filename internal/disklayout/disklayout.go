// Package disklayout is the shape of a Kestrel disk that the image builder
// lays out and `kestrel install` writes again on a node: partition sizes,
// and the slots' kernel command line. The
// builder writes it into the ISO (layout.ISOInstall) so that an installed
// disk is laid out like the disk image of the same release.
//
// Limits: sizes in whole MiB; the partition order and names are fixed
// (layout.PartESP, root-a, root-b, state, in that order).
package disklayout

import (
	"encoding/json"
	"fmt"
)

// Layout is one disk's shape.
type Layout struct {
	ESPMiB   int64 `json:"esp_mib"`
	RootMiB  int64 `json:"root_mib"` // each of root-a and root-b
	StateMiB int64 `json:"state_mib"`
	// Options is the slots' kernel command line without the verity
	// parameters (the release's) and kestrel.slot.
	Options []string `json:"options"`
}

// AlignMiB is the alignment of every partition, and the space left before
// the first (primary GPT) and after the last (backup GPT).
const AlignMiB = 1

// MinBytes is the smallest disk the layout fits on.
func (l Layout) MinBytes() int64 {
	return (AlignMiB + l.ESPMiB + 2*l.RootMiB + l.StateMiB + AlignMiB) << 20
}

// Parse reads a layout and checks it.
func Parse(data []byte) (Layout, error) {
	var l Layout
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("disk layout: %w", err)
	}
	return l, l.Validate()
}

// Validate checks that every size is positive.
func (l Layout) Validate() error {
	for _, s := range []struct {
		name string
		v    int64
	}{{"esp_mib", l.ESPMiB}, {"root_mib", l.RootMiB}, {"state_mib", l.StateMiB}} {
		if s.v <= 0 {
			return fmt.Errorf("disk layout: %s: %d, want > 0", s.name, s.v)
		}
	}
	return nil
}

// Marshal is the layout as JSON.
func (l Layout) Marshal() ([]byte, error) { return json.MarshalIndent(l, "", "  ") }
