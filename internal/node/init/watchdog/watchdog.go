// Package watchdog arms the Linux hardware watchdog (/dev/watchdog, the
// kernel's generic interface for i6300esb, iTCO, sp805, ...): once armed,
// the machine resets unless it is petted within the timeout. PID 1 arms
// it when it is about to reboot out of a rescue shell, so that a reboot
// that hangs (a dead disk in sync, a wedged kernel thread) still ends in
// a reset and the boot loader's fallback.
//
// Limits: the first device only (/dev/watchdog); no pretimeout, no
// status or boot-reason reading; a driver that rejects the timeout keeps
// its own, which Open reports.
package watchdog

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Device is the first watchdog's device node.
const Device = "/dev/watchdog"

// Dog is an armed watchdog.
type Dog struct {
	f       *os.File
	Timeout time.Duration // what the driver accepted
}

// ErrNone is Open's error when there is no watchdog device.
var ErrNone = errors.New("no watchdog device")

// Open arms the watchdog at path with timeout (whole seconds): opening
// the device starts it. The driver may round the timeout; Dog.Timeout is
// what it accepted.
func Open(path string, timeout time.Duration) (*Dog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNone
	}
	if err != nil {
		return nil, fmt.Errorf("watchdog %s: %w", path, err)
	}
	d := &Dog{f: f}
	secs := int(timeout / time.Second)
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		// Armed with the driver's own timeout: still a watchdog.
		got, gerr := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT)
		if gerr != nil {
			return d, fmt.Errorf("watchdog %s: set timeout %ds: %w (timeout unknown)", path, secs, err)
		}
		d.Timeout = time.Duration(got) * time.Second
		return d, fmt.Errorf("watchdog %s: set timeout %ds: %w (keeps %v)", path, secs, err, d.Timeout)
	}
	// WDIOC_SETTIMEOUT writes back the timeout the driver chose.
	got, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT)
	if err != nil {
		got = secs
	}
	d.Timeout = time.Duration(got) * time.Second
	return d, nil
}

// Pet restarts the countdown.
func (d *Dog) Pet() error {
	if _, err := d.f.Write([]byte{0}); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}

// Disarm stops the watchdog (the "magic close": a 'V' before closing),
// unless the kernel was built with WATCHDOG_NOWAYOUT.
func (d *Dog) Disarm() error {
	_, err := d.f.Write([]byte("V"))
	if cerr := d.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}
