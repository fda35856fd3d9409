// Command kestrel is the one on-device binary: /init in the initramfs
// (stage 1), /sbin/init in the rootfs (stage 2, PID 1), and the operator
// CLI (/usr/bin/kestrel). It only dispatches; the work is in pkg/.
//
//	PID 1, argv[0] == /init  -> stage 1
//	PID 1, otherwise         -> stage 2
//	any other PID            -> the subcommand in os.Args[1]
package main

import (
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
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/randomseed"
	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
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
// console, forever, instead of a kernel panic.
func rescue(why string) {
	go rescuePower()
	banner := fmt.Sprintf("\n*** kestrel: %s\n*** dropping to a rescue shell on the console (exit restarts it)\n\n", strings.TrimRight(why, "\n"))
	console.Rescue(os.Stdout, console.Device("/sys", "/dev", "/dev/console"), "/bin/sh", banner)
}

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
		rescue(fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
	}
}

func runStage1() {
	defer pid1Guard()
	err := stage1.Run(stage1.Env{
		Console: os.Stdout, Proc: "/proc", Sys: "/sys", Dev: "/dev", Root: "/",
		NewRoot: layout.NewRoot, EtcStage: "/.etc",
		Clock: boottime.Now, Mount: unix.Mount, WaitTimeout: 10 * time.Second,
		SwitchRoot: stage1.SwitchRoot, Entropy: randomseed.Linux{},
		Unmount: unix.Unmount, Hooks: stage1Hooks(),
	})
	var refused *stage1.RefusedError
	if errors.As(err, &refused) && refused.RescueTimeout > 0 {
		// The slot's entry is demoted: after the rescue window the
		// reboot lands in the other slot.
		go rescue(fmt.Sprintf("stage 1 failed: %v", err))
		time.Sleep(refused.RescueTimeout)
		logf := func(f string, args ...any) { fmt.Fprintf(os.Stdout, "kestrel: "+f+"\n", args...) }
		logf("rescue window over: rebooting to fall back to the other slot")
		logf("%v", power.System(func() {}, logf).Run(power.Reboot))
	}
	rescue(fmt.Sprintf("stage 1 failed: %v", err))
}

func runStage2() {
	defer pid1Guard()
	err := stage2.Run(stage2.Env{
		Console: os.Stdout, Root: "/", Clock: boottime.Now, Now: time.Now, Mount: unix.Mount,
		Version: buildinfo.Version, Shell: "/bin/sh", Login: "/bin/login", DHCPWait: 10 * time.Second,
		Hooks: stage2Hooks(),
	})
	rescue(fmt.Sprintf("stage 2 failed: %v", err))
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
