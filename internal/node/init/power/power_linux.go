package power

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"golang.org/x/sys/unix"
)

// System returns a Shutdown wired to the real system calls. stop stops
// the services; logf reports progress on the console. Its Deadline is
// DefaultDeadline; the caller sets Force.
func System(stop func(), logf func(string, ...any)) Shutdown {
	return Shutdown{
		StopServices: stop,
		KillAll:      func(sig unixSignal) { unix.Kill(-1, sig) },
		Remaining:    remaining,
		Settle:       3 * time.Second,
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
		// A hung clean sequence still ends in reboot(2).
		Deadline: DefaultDeadline,
	}
}

type unixSignal = unix.Signal

// remaining counts live user processes other than the caller: entries of
// /proc whose parent is not kthreadd (2), that are not zombies.
func remaining() int {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == 2 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parens.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[1] == "2" {
			continue
		}
		n++
	}
	return n
}
