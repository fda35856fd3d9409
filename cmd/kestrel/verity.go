package main

import (
	"context"
	"fmt"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/dmverity"
	"github.com/kestrel-os/kestrel/internal/verity"
)

func init() {
	register(command{"verity", "status | check | check-slot SLOT: the root's dm-verity status; read a whole root and verify every block", verityCmd})
}

// verityCmd reports on the root stage 1 opened through dm-verity, and
// verifies whole roots: "check" the running one (what stage 2 runs in the
// background), "check-slot" the other slot's, with the parameters of its
// boot entry. Checks print their throughput, for the operator and the
// boot tests.
func verityCmd(args []string) int {
	usage := func() int {
		fmt.Fprintln(os.Stderr, "usage: kestrel verity status | check | check-slot SLOT")
		return 2
	}
	if len(args) == 0 {
		return usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch {
	case args[0] == "status" && len(args) == 1, args[0] == "check" && len(args) == 1:
		st, err := dmverity.TableStatus(dmverity.Control, dmverity.RootName)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel verity: %v (is the root verified? see /proc/cmdline)\n", err)
			return 1
		}
		fmt.Printf("%s: %s %s\n", dmverity.RootName, st.Target, st.Info)
		if args[0] == "status" {
			if st.Corrupt() {
				return 1
			}
			return 0
		}
		dev, err := dmverity.NodeByName("/sys", "/dev", dmverity.RootName)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel verity check: %v\n", err)
			return 1
		}
		return timedCheck(func() (int64, error) { return dmverity.Check(ctx, dev) })
	case args[0] == "check-slot" && len(args) == 2:
		slot := args[1]
		p, part, err := slotVerity(slot)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel verity check-slot: %v\n", err)
			return 1
		}
		fmt.Printf("slot %s: %s, root hash %s\n", slot, part, p.RootHash)
		return timedCheck(func() (int64, error) {
			return dmverity.CheckDevice(ctx, dmverity.Control, "/dev", "kestrel-check-"+slot, p, part)
		})
	}
	return usage()
}

func timedCheck(check func() (int64, error)) int {
	start := time.Now()
	n, err := check()
	d := time.Since(start)
	fmt.Printf("read %d bytes in %.2fs (%.1f MB/s)\n", n, d.Seconds(), float64(n)/1e6/d.Seconds())
	if err != nil {
		fmt.Fprintf(os.Stderr, "kestrel verity: %v\n", err)
		return 1
	}
	fmt.Println("every block verified")
	return 0
}

// slotVerity reads slot's verity parameters from its boot entry on the
// ESP and finds its root partition.
func slotVerity(slot string) (verity.Params, string, error) {
	if !slices.Contains(layout.Slots, slot) {
		return verity.Params{}, "", fmt.Errorf("%q is not a slot (want one of %s)", slot, strings.Join(layout.Slots, ", "))
	}
	slots, err := bootslot.Open(layout.ESPMount, "").Slots()
	if err != nil {
		return verity.Params{}, "", err
	}
	i := slices.IndexFunc(slots, func(s bootslot.Slot) bool { return s.Name == slot })
	if slots[i].State == bootslot.Empty {
		return verity.Params{}, "", fmt.Errorf("slot %s has no boot entry", slot)
	}
	file := filepath.Join(layout.ESPMount, layout.ESPEntriesDir, slots[i].File)
	p, ok, err := verity.FromCmdline(kcmdline.Parse(strings.Join(slots[i].Options, " ")).Get)
	if err != nil {
		return verity.Params{}, "", fmt.Errorf("%s: %w", file, err)
	}
	if !ok {
		return verity.Params{}, "", fmt.Errorf("%s: no %s: slot %s is not verified", file, verity.CmdlineRootHash, slot)
	}
	devs, err := blockdev.List("/sys")
	if err != nil {
		return verity.Params{}, "", err
	}
	d, err := blockdev.ByPartName(devs, layout.RootPartition(slot))
	if err != nil {
		return verity.Params{}, "", err
	}
	return p, d.Path("/dev"), nil
}
