// Command kestrel is the on-device binary: the initramfs's /init (stage
// 1, then stage 2 as PID 1, exec'd again from memory after switch_root:
// stage1.SwitchRoot), the rootfs's /sbin/init (stage 2 when that exec
// cannot be done) and the operator CLI (/usr/bin/kestrel). It only
// dispatches; the work is in internal/node.
//
//	PID 1, argv[0] == /init  -> stage 1
//	PID 1, otherwise         -> stage 2
//	any other PID            -> the subcommand in os.Args[1]
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/buildinfo"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/init/rescue"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
)

// init names a process exec'd through layout.SelfExe (stage 2's PID 1,
// sshd) after its argv[0], "init" or "kestrel", as an exec of that path
// would have: the kernel named it "exe", which is what ps, top and pidof
// would show. The name is per thread, and package initialisation is when
// Go runs on the main thread, whose name the process shows.
func init() {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil || string(comm) != filepath.Base(layout.SelfExe)+"\n" {
		return
	}
	if name, err := unix.BytePtrFromString(filepath.Base(os.Args[0])); err == nil {
		unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	}
}

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

// runStage1 is stage 1, with the config's initramfs phase run in-process.
func runStage1() {
	defer rescue.Guard()
	err := stage1.Run(stage1.DeviceEnv(stage1Hooks()))
	rescue.Enter(fmt.Sprintf("stage 1 failed: %v", err), stage1.RescueTimer(err, rescue.Timer(rescue.Logf)))
}

func runStage2() {
	defer rescue.Guard()
	err := stage2.Run(stage2.Env{
		Console: os.Stdout, Root: "/", Clock: boottime.Now, Now: time.Now, Mount: unix.Mount,
		Version: buildinfo.Version, Shell: "/bin/sh", Login: "/bin/login", DHCPWait: 10 * time.Second,
		Hooks: stage2Hooks(),
	})
	rescue.Enter(fmt.Sprintf("stage 2 failed: %v", err), rescue.Timer(rescue.Logf))
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
