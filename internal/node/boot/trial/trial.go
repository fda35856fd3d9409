// Package trial ties the booted slot's fate to the boot's health, in stage
// 2: a slot the loader is trying (its entry still counts tries) becomes good
// only when the boot is declared good (k3s healthy, or the node up when the
// image has no k3s) and its whole dm-verity root has been read and
// verified; a boot declared not good ends the trial at once with a reboot,
// so the loader's counter runs down and it falls back to the other slot.
// A release the loader gave up on is recorded (internal/node/boot/badrelease)
// at the start of every boot.
//
// A slot that is already good is never rebooted for an unhealthy k3s: that
// would turn a config mistake into a reboot loop on a node with nothing to
// fall back to. Its verity check still runs; a corrupt good root is demoted
// (exhausted entry) and the node reboots into the other slot when that one
// is good, and otherwise stays up and says so.
//
// Limits: the verity check reads the whole root once per boot, after the
// node is ready, at whatever the disk gives; marking good waits for it.
package trial

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/dmverity"
)

// Trial is one boot's trial of its slot.
type Trial struct {
	Chain  bootslot.Chain
	Booted string // the booted slot
	Root   string // the node's root ("/"), for the bad-release record and sysfs
	Now    func() time.Time
	Logf   func(format string, args ...any)
	Warn   func(format string, args ...any)
	Reboot func()

	once   sync.Once
	verity chan error // the whole-root check's result
}

// Start runs at boot, after the ESP is mounted: it records a release the
// loader gave up on. It returns the newly recorded bad version, if any.
func (t *Trial) Start(ctx context.Context) (string, error) {
	t.verity = make(chan error, 1)
	slots, err := t.Chain.Slots()
	if err != nil {
		return "", err
	}
	bad, err := badrelease.Detect(filepath.Join(t.Root, badrelease.Path), slots, t.Now())
	if err != nil {
		return "", err
	}
	if bad != "" {
		t.Warn("rolled back: the boot loader gave up on release %s; it is recorded as bad and will not be installed again without --force", bad)
	}
	return bad, nil
}

// CheckRoot starts the whole-root verity read in the background; stage 2
// calls it once the node is ready, so the read does not delay it.
func (t *Trial) CheckRoot(ctx context.Context) {
	go func() { t.verity <- t.checkRoot(ctx) }()
}

// Good runs once the boot is declared good: after the verity check passes
// (it waits in the background, so a boot declared good before the node is
// ready does not hold up the ready line), a slot on trial is marked good.
func (t *Trial) Good(ctx context.Context) error {
	go func() {
		if err := t.markGood(context.WithoutCancel(ctx)); err != nil {
			t.Warn("%v", err)
		}
	}()
	return nil
}

func (t *Trial) markGood(ctx context.Context) error {
	select {
	case err := <-t.verity:
		t.verity <- err // keep it for another reader
		if err != nil {
			return t.corrupt(err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	s, err := t.booted()
	if err != nil {
		return err
	}
	if s.State != bootslot.Trying {
		return nil
	}
	if err := t.Chain.MarkGood(t.Booted); err != nil {
		return err
	}
	if err := badrelease.Forgive(filepath.Join(t.Root, badrelease.Path), s.Version); err != nil {
		t.Warn("%v", err)
	}
	t.Logf("slot %s (%s) marked good after %d boot tries", t.Booted, s.Version, s.TriesDone)
	return nil
}

// NotGood runs once the boot is declared not good: a slot on trial is
// given up with a reboot (the loader has already counted this try).
func (t *Trial) NotGood(detail string) {
	s, err := t.booted()
	if err != nil {
		t.Warn("%v", err)
		return
	}
	if s.State != bootslot.Trying {
		t.Warn("boot not good (%s); slot %s is a good slot, so the node stays up on it", detail, t.Booted)
		return
	}
	t.Warn("boot not good (%s): slot %s (%s) is on trial with %d tries left; rebooting", detail, t.Booted, s.Version, s.TriesLeft)
	t.once.Do(t.Reboot)
}

func (t *Trial) booted() (bootslot.Slot, error) {
	slots, err := t.Chain.Slots()
	if err != nil {
		return bootslot.Slot{}, err
	}
	i := slices.IndexFunc(slots, func(s bootslot.Slot) bool { return s.Name == t.Booted })
	if i < 0 {
		return bootslot.Slot{}, fmt.Errorf("booted slot %q has no entry", t.Booted)
	}
	return slots[i], nil
}

// corrupt handles a root that failed verification: the slot's entry is
// exhausted, and the node reboots when the other slot can take over.
func (t *Trial) corrupt(cause error) error {
	t.Warn("root of slot %s fails dm-verity: %v", t.Booted, cause)
	if _, _, err := t.Chain.Demote(t.Booted); err != nil {
		return fmt.Errorf("demote slot %s: %w", t.Booted, err)
	}
	slots, err := t.Chain.Slots()
	if err == nil && slices.ContainsFunc(slots, func(s bootslot.Slot) bool { return s.Name != t.Booted && s.State == bootslot.Good }) {
		t.Warn("slot %s demoted; rebooting into the other slot", t.Booted)
		t.once.Do(t.Reboot)
		return fmt.Errorf("root of slot %s is corrupt: %w", t.Booted, cause)
	}
	t.Warn("slot %s demoted, but the other slot is not good: staying up on a damaged root", t.Booted)
	return fmt.Errorf("root of slot %s is corrupt: %w", t.Booted, cause)
}

// checkRoot reads the whole root device through dm-verity when / is on a
// device-mapper device; a root without verity passes (and is logged).
func (t *Trial) checkRoot(ctx context.Context) error {
	dev, ok, err := rootDM(t.Root)
	if err != nil {
		return err
	}
	if !ok {
		t.Logf("root is not on dm-verity: no whole-root check")
		return nil
	}
	start := t.Now()
	n, err := dmverity.Check(ctx, dev)
	if err != nil {
		return err
	}
	el := t.Now().Sub(start)
	t.Logf("root verified: %d MB in %.1fs (%.0f MB/s) through dm-verity", n>>20, el.Seconds(), float64(n)/1e6/el.Seconds())
	return nil
}

// rootDM returns the device node of the device-mapper device that / is
// mounted from, if it is one.
func rootDM(root string) (string, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		return "", false, fmt.Errorf("stat %s: %w", root, err)
	}
	sysDev := filepath.Join(root, "sys/dev/block", fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if _, err := os.Stat(filepath.Join(sysDev, "dm")); err != nil {
		return "", false, nil
	}
	target, err := os.Readlink(sysDev)
	if err != nil {
		return "", false, err
	}
	return filepath.Join(root, "dev", filepath.Base(target)), true, nil
}
