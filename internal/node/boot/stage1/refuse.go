package stage1

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
)

// RefusedError is a slot's root that stage 1 would not boot: it fails
// dm-verity verification, or the boot entry's verity parameters are
// malformed. Stage 1 has demoted the slot's boot entry (Demoted) so that
// the boot counts as a failed try; the caller gives the rescue shell for
// RescueTimeout (console.RescueTimeout, the one setting of every rescue;
// 0: for ever) and then reboots, and the loader picks the other slot.
type RefusedError struct {
	Slot          string
	Err           error
	Demoted       string        // the entry's new name on the ESP ("" when it could not be renamed)
	DemoteErr     error         // why it could not
	RescueTimeout time.Duration // 0: no reboot
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("refusing to boot slot %s: %v\n", e.Slot, e.Err)
	if e.DemoteErr != nil {
		s += fmt.Sprintf("could not demote the slot's boot entry (%v): the next boot may try this slot again\n", e.DemoteErr)
	} else {
		s += fmt.Sprintf("boot entry demoted to %s: the next boot falls back to the other slot\n", e.Demoted)
	}
	if e.RescueTimeout > 0 {
		s += fmt.Sprintf("rebooting in %v (%s=SECONDS, 0 to stay)\n", e.RescueTimeout, layout.CmdlineRescueTimeout)
	}
	return s
}

func (e *RefusedError) Unwrap() error { return e.Err }

// refuseSlot mounts the ESP read-write, demotes slot's entry and returns
// the RefusedError for why.
func refuseSlot(env Env, devs []blockdev.Device, slot string, wait time.Duration, why error, logf func(string, ...any)) error {
	logf("slot %s refused: %v", slot, why)
	r := &RefusedError{Slot: slot, Err: why, RescueTimeout: wait}
	target := filepath.Join(env.Root, espStage)
	o := esp.Options{Sys: env.Sys, Dev: env.Dev, Target: target}
	if err := esp.Mount(devs, o, env.Mount); err != nil {
		r.DemoteErr = fmt.Errorf("mount the ESP: %w", err)
		return r
	}
	from, to, err := bootslot.Open(target, "").Demote(slot)
	if err != nil {
		r.DemoteErr = err
	} else {
		r.Demoted = to
		logf("boot entry %s -> %s", from, to)
	}
	if env.Unmount != nil {
		if err := env.Unmount(target, 0); err != nil && r.DemoteErr == nil {
			r.DemoteErr = fmt.Errorf("unmount the ESP: %w", err)
		}
	}
	return r
}
