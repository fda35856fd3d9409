// Package power brings the system down cleanly: stop the services, end
// every other process, sync, unmount in reverse mount order (remounting
// read-only what cannot be unmounted, so ext4 is clean and the next boot
// replays no journal), and call reboot(2) to power off or restart.
//
// The order and every side effect are fields of Shutdown, so the sequence
// and the unmount plan are tested on the host.
//
// The clean sequence can hang (a process in uninterruptible sleep on a
// dead disk or NFS server is never reaped, an unmount blocks): Deadline
// bounds it, and a second request (Force) cuts it short; either way the
// filesystems get a bounded sync and reboot(2) runs.
//
// A reboot can skip the firmware (Kexec): the next kernel is loaded
// before the clean sequence and started instead of a restart.
//
// Limits: no shutdown hooks per service beyond SIGTERM, no
// suspend; a filesystem that can neither be unmounted nor remounted
// read-only is reported and left to the kernel's final sync.
package power

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

// Action is what happens at the end.
type Action int

// Actions.
const (
	Poweroff Action = iota
	Reboot
	Halt
	// RebootFirmware is a reboot that goes through the firmware and the
	// boot loader even when Shutdown.Kexec would skip them.
	RebootFirmware
)

func (a Action) String() string {
	return [...]string{"poweroff", "reboot", "halt", "reboot-firmware"}[a]
}

// ParseAction maps a name to an Action.
func ParseAction(s string) (Action, error) {
	switch s {
	case "poweroff":
		return Poweroff, nil
	case "reboot":
		return Reboot, nil
	case "halt":
		return Halt, nil
	case "reboot-firmware":
		return RebootFirmware, nil
	}
	return 0, fmt.Errorf("unknown power action %q (want poweroff, reboot, reboot-firmware or halt)", s)
}

// FromSignal maps a signal sent to PID 1 to an action, following busybox
// init (so busybox's poweroff, reboot and halt applets work):
// SIGUSR2 and SIGPWR power off, SIGTERM and SIGINT (Ctrl-Alt-Del) reboot,
// SIGUSR1 halts.
func FromSignal(s os.Signal) Action {
	switch s {
	case syscall.SIGTERM, syscall.SIGINT:
		return Reboot
	case syscall.SIGUSR1:
		return Halt
	}
	return Poweroff
}

// Signals are the signals FromSignal understands.
var Signals = []os.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPWR}

// RebootCmd is the reboot(2) command for a. The magic numbers do not fit
// a 32-bit int as constants, hence the conversion through uint32 (the
// kernel reads the argument as a 32-bit unsigned int anyway).
func (a Action) RebootCmd() int {
	cmd := uint32(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	switch a {
	case Reboot, RebootFirmware:
		cmd = syscall.LINUX_REBOOT_CMD_RESTART
	case Halt:
		cmd = syscall.LINUX_REBOOT_CMD_HALT
	}
	return int(int32(cmd))
}

// Shutdown is the sequence with its side effects injected.
type Shutdown struct {
	StopServices func()                        // supervisor.StopAll
	KillAll      func(sig syscall.Signal)      // kill(-1, sig): every process but PID 1
	Remaining    func() int                    // processes left besides PID 1 and kernel threads
	Settle       time.Duration                 // at most this long between SIGTERM and SIGKILL
	Sync         func()                        // sync(2)
	ReadMounts   func() ([]mounts.Info, error) // /proc/self/mountinfo
	Unmount      func(target string) error     // umount2(target, 0)
	RemountRO    func(target string) error     // mount(MS_REMOUNT|MS_RDONLY)
	Reboot       func(cmd int) error           // reboot(2)
	Sleep        func(time.Duration)           // time.Sleep
	Logf         func(format string, args ...any)
	// Deadline bounds the clean sequence; when it passes, Run syncs (for
	// at most SyncWait) and calls Reboot anyway. 0: no deadline.
	Deadline time.Duration
	// Force, when it becomes ready (a second power request), does the
	// same at once.
	Force <-chan struct{}
	// SyncWait bounds the sync of a forced shutdown (sync(2) itself can
	// hang on a dead disk); 0 is DefaultSyncWait.
	SyncWait time.Duration
	// After is time.After, injected for tests; nil is time.After.
	After func(time.Duration) <-chan time.Time
	// Kexec, when set, is asked before a reboot's clean sequence (the ESP
	// still mounted) to load the next boot's kernel into this one
	// (internal/node/init/kexec). When it did, the clean sequence ends in
	// reboot(2)'s LINUX_REBOOT_CMD_KEXEC, which skips the firmware and
	// the boot loader, and falls back to a firmware reboot if that
	// fails. A forced reboot always goes through the firmware.
	Kexec func() bool
}

// KexecCmd is reboot(2)'s command that starts the kernel loaded with
// kexec_file_load(2).
const KexecCmd = syscall.LINUX_REBOOT_CMD_KEXEC

// DefaultDeadline is how long PID 1 lets the clean sequence run: longer
// than the supervisor's stop timeout plus the settle time, so a forced
// reboot means something hung.
const DefaultDeadline = 45 * time.Second

// DefaultSyncWait bounds the sync of a forced shutdown.
const DefaultSyncWait = 5 * time.Second

// Run performs the sequence. It returns only if reboot(2) fails.
func (s Shutdown) Run(a Action) error {
	// The kexec load reads the ESP, which can hang as an unmount can:
	// it runs inside the bounded part too.
	var kexec bool
	prepare := func() { kexec = a == Reboot && s.Kexec != nil && s.Kexec() }
	if s.Deadline <= 0 && s.Force == nil {
		prepare()
		s.clean(a)
		return s.reboot(a, kexec)
	}
	after := s.After
	if after == nil {
		after = time.After
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { // a panic here must not keep the node from rebooting
			if r := recover(); r != nil {
				s.Logf("%s: panic in the shutdown sequence: %v", a, r)
			}
		}()
		prepare()
		s.clean(a)
	}()
	var expired <-chan time.Time
	if s.Deadline > 0 {
		expired = after(s.Deadline)
	}
	select {
	case <-done: // kexec is set: done is closed after prepare wrote it
		return s.reboot(a, kexec)
	case <-expired:
		s.Logf("%s: not done after %v: forcing it", a, s.Deadline)
	case <-s.Force:
		s.Logf("%s: requested again: forcing it", a)
	}
	s.boundedSync(a, after)
	return s.Reboot(a.RebootCmd())
}

// reboot ends a clean sequence: into the loaded kernel when kexec, through
// the firmware otherwise or when that fails.
func (s Shutdown) reboot(a Action, kexec bool) error {
	if kexec {
		err := s.Reboot(int(int32(KexecCmd)))
		if err == nil {
			return nil // reboot(2) does not return when it works
		}
		s.Logf("%s: starting the loaded kernel failed (%v): rebooting through the firmware", a, err)
	}
	return s.Reboot(a.RebootCmd())
}

// boundedSync syncs, waiting at most SyncWait: a forced shutdown happens
// because something hangs, and sync(2) may hang on the same disk.
func (s Shutdown) boundedSync(a Action, after func(time.Duration) <-chan time.Time) {
	wait := s.SyncWait
	if wait <= 0 {
		wait = DefaultSyncWait
	}
	synced := make(chan struct{})
	go func() { s.Sync(); close(synced) }()
	select {
	case <-synced:
	case <-after(wait):
		s.Logf("%s: sync not done after %v, going on without it", a, wait)
	}
}

// clean is the clean sequence up to reboot(2).
func (s Shutdown) clean(a Action) {
	s.Logf("%s: stopping services", a)
	s.StopServices()
	s.KillAll(syscall.SIGTERM)
	const tick = 50 * time.Millisecond
	for waited := time.Duration(0); waited < s.Settle && s.Remaining() > 0; waited += tick {
		s.Sleep(tick)
	}
	s.KillAll(syscall.SIGKILL)
	s.Sync()
	if err := s.unmountAll(); err != nil {
		s.Logf("%s: %v", a, err)
	}
	s.Sync()
	s.Logf("%s: filesystems clean, bye", a)
}

func (s Shutdown) unmountAll() error {
	var left []string
	// A few passes: a mount can be busy only because a later one in the
	// same pass sits on top of it.
	for pass := 0; pass < 3; pass++ {
		infos, err := s.ReadMounts()
		if err != nil {
			return err
		}
		left = UnmountPlan(infos)
		var busy []string
		for _, t := range left {
			if err := s.Unmount(t); err != nil {
				busy = append(busy, t)
			}
		}
		if len(busy) == 0 {
			left = nil
			break
		}
		left = busy
	}
	infos, _ := s.ReadMounts()
	var failed []string
	for _, t := range append(left, "/") {
		if m, ok := mounts.Find(infos, t); ok && m.ReadOnly() {
			continue
		}
		if err := s.RemountRO(t); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", t, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("could neither unmount nor remount read-only: %s", strings.Join(failed, ", "))
	}
	return nil
}

// keep lists filesystems that are not unmounted: the root, and the kernel
// API filesystems the last steps still use (they hold no data).
var keepTypes = map[string]bool{"proc": true, "sysfs": true, "devtmpfs": true}

// UnmountPlan returns the mount points to unmount, newest first.
func UnmountPlan(infos []mounts.Info) []string {
	var out []string
	for i := len(infos) - 1; i >= 0; i-- {
		m := infos[i]
		if m.Target == "/" || keepTypes[m.FSType] {
			continue
		}
		out = append(out, m.Target)
	}
	return out
}
