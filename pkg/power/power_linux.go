package power

import (
	"fmt"
	"time"

	"github.com/kestrel-os/kestrel/pkg/mounts"
	"golang.org/x/sys/unix"
)

// System returns a Shutdown wired to the real system calls. stop stops
// the services; logf reports progress on the console.
func System(stop func(), logf func(string, ...any)) Shutdown {
	return Shutdown{
		StopServices: stop,
		KillAll:      func(sig unixSignal) { unix.Kill(-1, sig) },
		Settle:       2 * time.Second,
		Sync:         unix.Sync,
		ReadMounts:   func() ([]mounts.Info, error) { return mounts.ReadMountinfo("/proc/self/mountinfo") },
		Unmount:      func(t string) error { return unix.Unmount(t, 0) },
		RemountRO: func(t string) error {
			if err := unix.Mount("", t, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("remount %s read-only: %w", t, err)
			}
			return nil
		},
		Reboot: func(cmd int) error { return unix.Reboot(cmd) },
		Sleep:  time.Sleep,
		Logf:   logf,
	}
}

type unixSignal = unix.Signal
