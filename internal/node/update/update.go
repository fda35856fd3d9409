// Package update is `kestrel upgrade` on the node: it writes a verified,
// signed release (internal/release) into the slot that is not running and
// offers that slot to the boot loader for a limited number of tries.
//
// Order of the writes, chosen so that a power cut at any moment leaves a
// node that boots a good slot:
//
//  1. the inactive slot's boot entry is removed (from now on the loader
//     cannot pick that slot, whatever its partition holds);
//  2. the root partition image (squashfs + dm-verity tree) is streamed into
//     the inactive root partition while hashed, synced, the kernel's buffer
//     cache for it dropped, read back and compared with the manifest;
//  3. kernel and initramfs go to the slot's directory on the ESP (temporary
//     file, fsync, rename, fsync of the directory);
//  4. last, the slot's entry is written with bootslot.DefaultTries tries and
//     the sort key that makes the loader boot it next, its command line the
//     running entry's with the new release's verity parameters.
//
// WriteSlot is steps 2 to 4 alone: `kestrel install` (internal/node/install)
// writes slot A of a new disk with it, as a good entry.
//
// Nothing is written before the release has been verified whole (the
// release package checks the signature and every part's hash first) and
// before the policy checks pass: same arch and board, not older than the
// running release, not the running release, not a release this node rolled
// back from (all but the arch can be overridden with Force).
//
// Limits: the running slot is never touched, so an upgrade needs an
// inactive slot at least as large as the new root image; the kernel
// command line is carried over from the running entry (a release cannot
// change it yet); 512-byte-sector block devices are assumed only in the
// size check's message, not in the write.
package update

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
	"github.com/kestrel-os/kestrel/internal/release"
)

// Part names in a release.
const (
	PartKernel = release.PartKernel
	PartInitrd = release.PartInitrd
	PartRootfs = release.PartRootfs
)

// Node is what the upgrade needs to know about the node it writes.
type Node struct {
	Host    string // the node's root: "/" on the node, "/host" in the upgrade Job
	Sys     string // sysfs, for finding the partitions
	Slot    string // the booted slot (kestrel.slot)
	Version string // the running release (os-release VERSION_ID)
	Arch    string // GOARCH of the node
	Board   string // "" for a generic image
	Chain   bootslot.Chain
}

// Options change the policy.
type Options struct {
	Force bool      // allow a downgrade, the same version, a bad release, another board
	Out   io.Writer // progress; nil discards
	// Terminal makes progress one rewritten line instead of plain lines.
	Terminal bool
	Now      func() time.Time
}

// Release is the verified release to write (internal/release.Release).
type Release interface {
	Manifest() *release.Manifest
	Open(part string) (io.ReadCloser, error)
}

// Result says what was written.
type Result struct {
	Slot    string
	Version string
	Bytes   int64         // root image bytes written
	Write   time.Duration // streaming the root image to the partition
}

// ErrRunning is wrapped by Check's error for the release the node runs.
var ErrRunning = errors.New("already running")

// Check applies the policy without writing anything.
func Check(n Node, m *release.Manifest, o Options) error {
	if m.Arch != n.Arch {
		return fmt.Errorf("release %s is for %s, this node is %s", m.Version, m.Arch, n.Arch)
	}
	if n.Board != "" && m.Board != n.Board && !o.Force {
		return fmt.Errorf("release %s is for board %q, this node is %q (--force to write it anyway)", m.Version, m.Board, n.Board)
	}
	if m.Version == n.Version && !o.Force {
		return fmt.Errorf("release %s is %w (--force to write it to the other slot anyway)", m.Version, ErrRunning)
	}
	if c, ok := Compare(m.Version, n.Version); !ok && !o.Force {
		return fmt.Errorf("cannot order versions %q and %q (not semantic versions; --force to write anyway)", m.Version, n.Version)
	} else if ok && c < 0 && !o.Force {
		return fmt.Errorf("release %s is older than the running %s: refusing a downgrade (--force to write it anyway)", m.Version, n.Version)
	}
	bad, err := badrelease.Load(filepath.Join(n.Host, badrelease.Path))
	if err != nil {
		return err
	}
	if badrelease.Contains(bad, m.Version) && !o.Force {
		return fmt.Errorf("this node rolled back from release %s before (see kestrel status; --force to try it again)", m.Version)
	}
	for _, name := range []string{PartKernel, PartInitrd, PartRootfs} {
		if _, ok := part(m, name); !ok {
			return fmt.Errorf("release %s has no %s", m.Version, name)
		}
	}
	if err := m.Verity.Validate(); err != nil {
		return fmt.Errorf("release %s: %w", m.Version, err)
	}
	return nil
}

// Compare orders two release versions as semantic versions (with or
// without a leading "v"); ok is false when either is not one.
func Compare(a, b string) (c int, ok bool) {
	va, vb := "v"+strings.TrimPrefix(a, "v"), "v"+strings.TrimPrefix(b, "v")
	if !semver.IsValid(va) || !semver.IsValid(vb) {
		return 0, false
	}
	return semver.Compare(va, vb), true
}

// Apply checks the policy, then writes rel into the inactive slot in the
// order the package doc gives.
func Apply(ctx context.Context, n Node, rel Release, o Options) (Result, error) {
	m := rel.Manifest()
	if err := Check(n, m, o); err != nil {
		return Result{}, err
	}
	target, err := Other(n.Slot)
	if err != nil {
		return Result{}, err
	}
	p := progress{out: o.Out, terminal: o.Terminal, now: o.Now}
	if p.now == nil {
		p.now = time.Now
	}
	rootfs, _ := part(m, PartRootfs)

	devs, err := blockdev.List(n.Sys)
	if err != nil {
		return Result{}, err
	}
	dev, err := blockdev.ByPartName(devs, layout.RootPartition(target))
	if err != nil {
		return Result{}, fmt.Errorf("slot %s: %w", target, err)
	}
	if dev.Size < rootfs.Size {
		return Result{}, fmt.Errorf("slot %s partition %s holds %s, the release's root image needs %s",
			target, dev.Name, blockdev.HumanSize(dev.Size), blockdev.HumanSize(rootfs.Size))
	}
	slots, err := n.Chain.Slots()
	if err != nil {
		return Result{}, err
	}
	running := slices.IndexFunc(slots, func(s bootslot.Slot) bool { return s.Name == n.Slot })
	if running < 0 || slots[running].State == bootslot.Empty {
		return Result{}, fmt.Errorf("the running slot %s has no boot entry to take the command line from", n.Slot)
	}

	p.line("upgrade %s -> %s: writing slot %s (%s)", n.Version, m.Version, target, dev.Path(filepath.Join(n.Host, "dev")))
	// 1. The loader must not pick the slot while it is being rewritten.
	if err := n.Chain.Forget(target); err != nil {
		return Result{}, err
	}
	p.line("step 1/4: boot entry of slot %s removed", target)

	opts := slices.DeleteFunc(slices.Clone(slots[running].Options), func(o string) bool {
		return strings.HasPrefix(o, "kestrel.verity.")
	})
	return writeSlot(ctx, rel, Target{
		Slot: target, Device: dev.Path(filepath.Join(n.Host, "dev")), ESP: filepath.Join(n.Host, layout.ESPMount),
		Chain: n.Chain, Options: opts, Tries: bootslot.DefaultTries,
	}, &p)
}

// Target is where WriteSlot writes a release.
type Target struct {
	Slot   string // a or b
	Device string // the slot's root partition (device node)
	ESP    string // where the ESP is mounted
	Chain  bootslot.Chain
	// Options is the entry's kernel command line without the verity
	// parameters (the release's are added) and kestrel.slot.
	Options []string
	// Tries is the entry's boot tries; 0 writes a good entry (an install).
	Tries int
}

// WriteSlot writes a verified release into t: steps 2 to 4 of the
// package doc (root image streamed and read back, kernel and initramfs on
// the ESP, the entry last). Apply runs it after its checks and step 1;
// `kestrel install` runs it for slot A of a new disk. The caller must
// have made sure the loader cannot boot t.Slot meanwhile.
func WriteSlot(ctx context.Context, rel Release, t Target, o Options) (Result, error) {
	p := progress{out: o.Out, terminal: o.Terminal, now: o.Now}
	if p.now == nil {
		p.now = time.Now
	}
	return writeSlot(ctx, rel, t, &p)
}

func writeSlot(ctx context.Context, rel Release, t Target, p *progress) (Result, error) {
	m := rel.Manifest()
	rootfs, ok := part(m, PartRootfs)
	if !ok {
		return Result{}, fmt.Errorf("release %s has no %s", m.Version, PartRootfs)
	}
	// 2. Root image into the partition, then read back.
	start := p.now()
	if err := writeRoot(ctx, rel, rootfs, t.Device, p); err != nil {
		return Result{}, fmt.Errorf("slot %s root: %w", t.Slot, err)
	}
	res := Result{Slot: t.Slot, Version: m.Version, Bytes: rootfs.Size, Write: p.now().Sub(start)}
	if err := verifyDevice(t.Device, rootfs); err != nil {
		return Result{}, fmt.Errorf("slot %s root: %w", t.Slot, err)
	}
	p.line("step 2/4: root image written and read back (%s, sha256 ok)", blockdev.HumanSize(rootfs.Size))

	// 3. Kernel and initramfs on the ESP.
	for _, f := range []struct{ part, path string }{{PartKernel, bls.KernelPath(t.Slot)}, {PartInitrd, bls.InitrdPath(t.Slot)}} {
		if err := writeESPFile(rel, f.part, filepath.Join(t.ESP, f.path)); err != nil {
			return Result{}, fmt.Errorf("slot %s: %w", t.Slot, err)
		}
	}
	p.line("step 3/4: kernel and initramfs written to the ESP")

	// 4. Offer the slot.
	entry := bls.Entry{Slot: t.Slot, Version: m.Version, Options: append(slices.Clone(t.Options), m.Verity.CmdlineOptions()...)}
	if err := t.Chain.Offer(entry, t.Tries); err != nil {
		return Result{}, err
	}
	if t.Tries > 0 {
		p.line("step 4/4: slot %s offered for %d boot tries", t.Slot, t.Tries)
	} else {
		p.line("step 4/4: slot %s's boot entry written", t.Slot)
	}
	return res, nil
}

// Other returns the slot that is not slot.
func Other(slot string) (string, error) {
	for _, s := range layout.Slots {
		if s != slot && slices.Contains(layout.Slots, slot) {
			return s, nil
		}
	}
	return "", fmt.Errorf("booted slot %q is not one of %s", slot, strings.Join(layout.Slots, ", "))
}

func part(m *release.Manifest, name string) (release.Part, bool) { return m.Part(name) }

// writeRoot streams the root image into the partition.
func writeRoot(ctx context.Context, rel Release, rootfs release.Part, devPath string, p *progress) error {
	r, err := rel.Open(PartRootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(devPath, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// 1 MiB writes: large enough for the disk, small enough that progress
	// (and a power cut) can fall anywhere in a small root image.
	buf := make([]byte, 1<<20)
	var done int64
	p.begin(rootfs.Size)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("write %s: %w", devPath, err)
			}
			done += int64(n)
			p.update(done)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	p.end(done)
	if done != rootfs.Size {
		return fmt.Errorf("wrote %d bytes, the manifest says %d", done, rootfs.Size)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", devPath, err)
	}
	return f.Close()
}

// verifyDevice reads the partition's first Size bytes back, past the
// kernel's buffer cache (BLKFLSBUF drops it after the sync), and compares
// their sha256 with the manifest.
func verifyDevice(devPath string, want release.Part) error {
	f, err := os.Open(devPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("drop the buffer cache of %s: %w", devPath, err)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.LimitReader(f, want.Size), make([]byte, 4<<20)); err != nil {
		return fmt.Errorf("read back %s: %w", devPath, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("read back %s: sha256 %s, the release says %s", devPath, got, want.SHA256)
	}
	return nil
}

// writeESPFile replaces path on the ESP with the part (esp.WriteFile).
func writeESPFile(rel Release, name, path string) error {
	r, err := rel.Open(name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return esp.WriteFile(path, r)
}
