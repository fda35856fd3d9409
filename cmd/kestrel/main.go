// Command kestrel is the one on-device binary: /init in the initramfs
// (stage 1), /sbin/init in the rootfs (stage 2, PID 1), and the operator
// CLI (/usr/bin/kestrel). It only dispatches; the work is in pkg/.
//
//	PID 1, argv[0] == /init  -> stage 1
//	PID 1, otherwise         -> stage 2
//	any other PID            -> the subcommand in os.Args[1]
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/buildinfo"
	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/randomseed"
	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/init/watchdog"
)

func main() {
	if os.Getpid() == 1 {
		if os.Args[0] == layout.Init {
			runStage1()
		} else {
			runStage2()
		}
		return // not reached: both end in exec, reboot or a rescue shell
	}
	os.Exit(runCLI(os.Args[1:]))
}

// rescue is where PID 1 ends up when it cannot go on: a shell on the
// console instead of a kernel panic, and a reboot once nobody has typed
// on the console for the rescue timeout (console.RescueTimer; at the
// timeout regardless when the boot is on trial), so that an unattended
// node reaches the reboot A/B fallback needs. The hardware watchdog, where
// there is one, is armed meanwhile and left unpetted for the reboot: a
// reboot that hangs still ends in a reset.
func rescue(why string, timer console.RescueTimer) {
	logf := func(f string, args ...any) { fmt.Fprintf(os.Stdout, "kestrel: "+f+"\n", args...) }
	tty := console.Device("/sys", "/dev", "/dev/console")
	timer.LastInput, timer.Now, timer.After = console.TTYLastInput(tty), time.Now, time.After
	go rescuePower()
	go rescueReboot(timer, logf)
	banner := fmt.Sprintf("\n*** kestrel: %s\n*** dropping to a rescue shell on the console (exit restarts it)\n*** %s\n\n", strings.TrimRight(why, "\n"), timer.Banner())
	console.Rescue(os.Stdout, tty, "/bin/sh", banner)
}

// rescueTimer is the rescue timer of a failed boot: the kernel command
// line's timeout, on trial when the ESP (mounted by stage 2) says the
// booted slot's entry is being tried.
func rescueTimer(logf func(string, ...any)) console.RescueTimer {
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

// rescueReboot arms the watchdog, pets it until the timer says to reboot,
// then reboots (power.System's deadline bounds the clean part).
func rescueReboot(timer console.RescueTimer, logf func(string, ...any)) {
	defer func() { recover() }() // the shell must stay whatever happens here
	dog, err := watchdog.Open(watchdog.Device, rescueWatchdog)
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

// rescueWatchdog is the watchdog timeout during a rescue: above
// power.DefaultDeadline plus its bounded sync, so the clean reboot gets
// its chance first.
const rescueWatchdog = power.DefaultDeadline + power.DefaultSyncWait + 10*time.Second

// rescuePower honours power requests (busybox's poweroff/reboot, which
// signal PID 1, or `kestrel poweroff`, which falls back to the signal)
// while PID 1 sits in the rescue shell: no services to stop, but the same
// clean unmount before reboot(2).
func rescuePower() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, power.Signals...)
	a := power.FromSignal(<-c)
	logf := func(f string, args ...any) { fmt.Fprintf(os.Stdout, "kestrel: "+f+"\n", args...) }
	logf("%v", power.System(func() {}, logf).Run(a))
}

func pid1Guard() {
	if r := recover(); r != nil {
		rescue(fmt.Sprintf("panic: %v\n%s", r, debug.Stack()), rescueTimer(stdoutf))
	}
}

func stdoutf(f string, args ...any) { fmt.Fprintf(os.Stdout, "kestrel: "+f+"\n", args...) }

func runStage1() {
	defer pid1Guard()
	err := stage1.Run(stage1.Env{
		Console: os.Stdout, Proc: "/proc", Sys: "/sys", Dev: "/dev", Root: "/",
		NewRoot: layout.NewRoot, EtcStage: "/.etc",
		Clock: boottime.Now, Mount: unix.Mount, WaitTimeout: 10 * time.Second,
		SwitchRoot: stage1.SwitchRoot, Entropy: randomseed.Linux{},
		Unmount: unix.Unmount, Hooks: stage1Hooks(),
	})
	timer := rescueTimer(stdoutf)
	var refused *stage1.RefusedError
	if errors.As(err, &refused) {
		// The slot's entry is demoted: the reboot lands in the other
		// slot, so it comes at the timeout whether or not the console is
		// in use, as on trial (0 still stays).
		timer = console.RescueTimer{Timeout: refused.RescueTimeout, OnTrial: refused.RescueTimeout > 0}
	}
	rescue(fmt.Sprintf("stage 1 failed: %v", err), timer)
}

func runStage2() {
	defer pid1Guard()
	err := stage2.Run(stage2.Env{
		Console: os.Stdout, Root: "/", Clock: boottime.Now, Now: time.Now, Mount: unix.Mount,
		Version: buildinfo.Version, Shell: "/bin/sh", Login: "/bin/login", DHCPWait: 10 * time.Second,
		Hooks: stage2Hooks(),
	})
	rescue(fmt.Sprintf("stage 2 failed: %v", err), rescueTimer(stdoutf))
}

// command is one CLI subcommand. Subcommands live in their own files in
// this directory and add themselves with register from an init function,
// so they can be added without touching this file.
type command struct {
	name  string
	usage string // one line for the help text
	run   func(args []string) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

func runCLI(args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "kestrel: unknown command %q\n", args[0])
		usage()
		return 2
	}
	return c.run(args[1:])
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: kestrel <command> [args]\n\ncommands:\n")
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].usage)
	}
}
