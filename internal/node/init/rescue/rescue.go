// Package rescue is where PID 1 ends up when it cannot go on, in stage 1 and
// in stage 2 (both cmd/kestrel): a shell on the console instead of a kernel
// panic, and a reboot once nobody has typed on the console for the rescue
// timeout (console.RescueTimer; at the timeout regardless when the boot is
// on trial), so that an unattended node reaches the reboot A/B fallback
// needs. The hardware watchdog, where there is one, is armed meanwhile and
// left unpetted for the reboot: a reboot that hangs still ends in a reset.
//
// Limits: it works on the real console and devices (/dev/console,
// /proc/cmdline, the ESP at layout.ESPMount, watchdog.Device); the pieces
// it joins (console, power, watchdog, bootslot) are tested on their own.
package rescue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
	"github.com/kestrel-os/kestrel/internal/node/init/watchdog"
)

// Enter drops to the rescue shell on the console, saying why, and reboots
// when timer says so. It does not return.
func Enter(why string, timer console.RescueTimer) {
	tty := console.Device("/sys", "/dev", "/dev/console")
	timer.LastInput, timer.Now, timer.After = console.TTYLastInput(tty), time.Now, time.After
	go onPowerRequest()
	go rebootWhenDue(timer, Logf)
	banner := fmt.Sprintf("\n*** kestrel: %s\n*** dropping to a rescue shell on the console (exit restarts it)\n*** %s\n\n", strings.TrimRight(why, "\n"), timer.Banner())
	console.Rescue(os.Stdout, tty, "/bin/sh", banner)
}

// Guard, deferred first thing in PID 1's main, turns a panic into the
// rescue shell.
func Guard() {
	if r := recover(); r != nil {
		Enter(fmt.Sprintf("panic: %v\n%s", r, debug.Stack()), Timer(Logf))
	}
}

// Logf writes a "kestrel: " line on the console (PID 1's stdout).
func Logf(f string, args ...any) { fmt.Fprintf(os.Stdout, "kestrel: "+f+"\n", args...) }

// Timer is the rescue timer of a failed boot: the kernel command line's
// timeout, on trial when the ESP (mounted by stage 2) says the booted
// slot's entry is being tried.
func Timer(logf func(string, ...any)) console.RescueTimer {
	cmd, _ := kcmdline.Read("/proc/cmdline")
	t := console.RescueTimer{Timeout: console.RescueTimeout(cmd, logf)}
	slot := cmd.Value(layout.CmdlineSlot, "")
	if slots, err := bootslot.Open(layout.ESPMount, slot).Slots(); err == nil {
		for _, s := range slots {
			t.OnTrial = t.OnTrial || (s.Name == slot && s.State == bootslot.Trying)
		}
	}
	return t
}

// rebootWhenDue arms the watchdog, pets it until the timer says to
// reboot, then reboots (power.System's deadline bounds the clean part).
func rebootWhenDue(timer console.RescueTimer, logf func(string, ...any)) {
	defer func() { recover() }() // the shell must stay whatever happens here
	dog, err := watchdog.Open(watchdog.Device, watchdogTimeout)
	switch {
	case errors.Is(err, watchdog.ErrNone):
	case err != nil:
		logf("rescue: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if dog != nil {
		logf("rescue: hardware watchdog armed (%v)", dog.Timeout)
		go func() {
			tick := time.NewTicker(max(dog.Timeout/3, time.Second))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					dog.Pet()
				}
			}
		}()
	}
	if !timer.Wait(context.Background()) {
		return
	}
	stop() // the watchdog, unpetted from now on, resets a hung reboot
	logf("rescue: rebooting (%s)", timer.Banner())
	logf("%v", power.System(func() {}, logf).Run(power.Reboot))
}

// watchdogTimeout is the watchdog timeout during a rescue: above
// power.DefaultDeadline plus its bounded sync, so the clean reboot gets
// its chance first.
const watchdogTimeout = power.DefaultDeadline + power.DefaultSyncWait + 10*time.Second

// onPowerRequest honours power requests (busybox's poweroff/reboot, which
// signal PID 1, or `kestrel poweroff`, which falls back to the signal)
// while PID 1 sits in the rescue shell: no services to stop, but the same
// clean unmount before reboot(2).
func onPowerRequest() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, power.Signals...)
	a := power.FromSignal(<-c)
	Logf("%v", power.System(func() {}, Logf).Run(a))
}
