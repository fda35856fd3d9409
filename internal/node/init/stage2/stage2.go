// Package stage2 is Kestrel's PID 1 after switch_root: it finishes the
// mounts (devpts, cgroup2 with delegation, securityfs, bpf, the ESP
// after fsck.fat has checked it),
// loads the node's kernel modules, sets the hostname, brings up loopback
// and DHCP on wired interfaces, writes resolv.conf, runs the boot hooks
// other packages register, starts the console shell under the
// supervisor, prints one boot summary and the layout.ReadyMarker line,
// then reaps children and waits for a power request. Until that line,
// the services the hooks start run at the lowest CPU weight
// (supervisor.LowPriority), so the boot has the CPU first.
//
// Power requests reach PID 1 three ways, all ending in power.Shutdown:
//   - the control socket (layout.ControlSocket): ops "poweroff", "reboot",
//     "reboot-firmware", "halt" (what `kestrel poweroff|reboot` uses);
//   - signals, busybox's convention, so busybox's poweroff/reboot/halt
//     applets work too: SIGUSR2 = poweroff, SIGTERM = reboot,
//     SIGUSR1 = halt; SIGINT (Ctrl-Alt-Del) = reboot, SIGPWR = poweroff;
//   - the ACPI power button (KEY_POWER on /dev/input/event*) = poweroff.
//
// Everything stage 2 touches is a field of Env; the mount list and the
// pieces (supervisor, power, netup, ...) are tested on the host, the
// whole by the lead's qemu boot test.
//
// Limits: no config phases of its own (they plug in as Hooks), no
// time sync, no boot-good marking yet; it never exits (a failure
// it cannot continue from drops to a rescue shell on the console).
package stage2

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/coldplug"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/node/boot/randomseed"
	"github.com/kestrel-os/kestrel/internal/node/init/cgroup"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
	"github.com/kestrel-os/kestrel/internal/node/init/control"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/node/init/status"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
	"github.com/kestrel-os/kestrel/internal/node/net/netup"
	"github.com/kestrel-os/kestrel/internal/osfiles/hostname"
)

// Env is what stage 2 runs with.
type Env struct {
	Console  io.Writer
	Root     string           // "/" on the device; every path stage 2 touches is under it
	Clock    boottime.Clock   // CLOCK_BOOTTIME
	Now      func() time.Time // wall clock
	Mount    mounts.MountFunc
	Version  string
	Shell    string        // console shell, "/bin/sh"
	Login    string        // console login program, "/bin/login" (busybox)
	DHCPWait time.Duration // bound on the first leases
	Hooks    Hooks
}

// Hooks let other packages (config phases, k3s, sshd, ntp) take part in
// boot without stage 2 importing them; cmd/kestrel wires them.
type Hooks struct {
	// Boot runs after mounts, modules and hostname, before the network.
	Boot []Hook
	// Network configures static parts of the network and returns the
	// interfaces that should get DHCP. When it fails, the set it returned
	// still applies: the zero DHCPSet (every wired interface) unless it
	// named some.
	Network func(ctx context.Context, sys *System) (DHCPSet, error)
	// NetworkUp runs once DHCP is done, before the node is declared
	// ready (starting k3s under the supervisor belongs here). Kernel
	// modules other than the drivers of present hardware load after the
	// node is ready: a hook that needs them waits with
	// System.WaitModules, in a goroutine.
	NetworkUp []Hook
	// Ready runs once the node is declared ready, for work that must not
	// delay it (the whole-root verity read).
	Ready []Hook
	// ConsoleLogin, when set and true once the node is ready, puts a
	// login prompt (Env.Login) on the console instead of a root shell
	// (kestrel.console_shell: false).
	ConsoleLogin func() bool
	// Kexec, when set, is asked at the start of a reboot whether it
	// loaded the next boot's kernel, so the reboot skips the firmware
	// (power.Shutdown.Kexec).
	Kexec func(sys *System) bool
}

// DHCPSet says which interfaces get DHCP. The zero value is the default,
// every wired interface (netup.WiredInterfaces when DHCP starts); DHCPOn
// names them, and none at all when its list is empty. Unlike a nil and an
// empty slice, the two cannot be mistaken for each other.
type DHCPSet struct {
	named bool
	ifs   []string
}

// DHCPEveryWired is the default set: every wired interface.
func DHCPEveryWired() DHCPSet { return DHCPSet{} }

// DHCPOn is exactly ifs: no DHCP at all when ifs is empty.
func DHCPOn(ifs []string) DHCPSet { return DHCPSet{named: true, ifs: slices.Clone(ifs)} }

// EveryWired reports whether d is the default set.
func (d DHCPSet) EveryWired() bool { return !d.named }

// Interfaces are the interfaces DHCPOn named.
func (d DHCPSet) Interfaces() []string { return slices.Clone(d.ifs) }

func (d DHCPSet) String() string {
	switch {
	case !d.named:
		return "every wired interface"
	case len(d.ifs) == 0:
		return "none"
	}
	return strings.Join(d.ifs, " ")
}

// Hook is one named boot step; its error is reported, not fatal.
type Hook struct {
	Name string
	Run  func(ctx context.Context, sys *System) error
}

// System is the running node as hooks and handlers see it.
type System struct {
	Supervisor *supervisor.Supervisor
	Reaper     *reaper.Reaper
	Control    *control.Server
	Version    string
	Slot       string
	// Live is a boot from the live ISO (layout.CmdlineLive): state on
	// tmpfs, no ESP, no boot counting.
	Live     bool
	Hostname string
	Logf     func(format string, args ...any)
	// Power asks PID 1's main loop for a clean poweroff, reboot or halt
	// (the same path as the control socket's ops).
	Power func(power.Action)

	root        string
	modulesDone chan struct{}
	buttons     atomic.Int32 // input devices watched for the power key, +1 (0: not started)
	mu          sync.Mutex
	leases      []netup.Lease
	staticDNS   []string
	warnings    []string
}

// Leases returns the DHCP leases.
func (s *System) Leases() []netup.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.leases)
}

// SetStaticDNS records the config's DNS servers. Every rewrite of
// resolv.conf stage 2 makes (after DHCP, at each lease renewal) lists them
// first, then the leases' ones (netup.DNS); the caller writes the file
// itself when the servers change.
func (s *System) SetStaticDNS(nameservers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staticDNS = slices.Clone(nameservers)
}

// StaticDNS returns what SetStaticDNS recorded.
func (s *System) StaticDNS() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.staticDNS)
}

// WaitModules blocks until every module of the node list is loaded (the
// ones not needed for the hardware load after the node is ready) and the
// LateMounts (bpffs) are done, or ctx ends. Hooks that need netfilter or bridges (k3s) call it first, from a
// goroutine so the node's readiness does not wait for it.
func (s *System) WaitModules(ctx context.Context) error {
	select {
	case <-s.modulesDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Warn records a problem for `kestrel status` and logs it.
func (s *System) Warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.warnings = append(s.warnings, msg)
	s.mu.Unlock()
	s.Logf("warning: %s", msg)
}

// Notef writes an informational line to the kernel log (/dev/kmsg, level
// 6: dmesg shows it, a quiet console does not), for what PID 1 has to say
// after the ready line: the console then belongs to a shell or a login
// prompt, where a line from PID 1 lands in the middle of what the user
// types or reads.
func (s *System) Notef(format string, args ...any) {
	f, err := os.OpenFile(s.path("/dev/kmsg"), os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "<6>kestrel: "+format+"\n", args...)
}

// Run is stage 2. It only returns on an error it cannot continue from.
//
// Its own goroutine is the power loop, listening from the first
// instruction on: the boot (mounts, hooks, console) runs beside it, so a
// hook that hangs cannot keep `kestrel reboot`, a signal or the power
// button from working. A second request while the shutdown runs forces
// it (power.Shutdown.Force).
func Run(env Env) error {
	start := env.Clock()
	logf := func(format string, args ...any) {
		fmt.Fprintf(env.Console, "kestrel: "+format+"\n", args...)
	}
	os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sys := &System{Version: env.Version, Logf: logf, root: env.Root, modulesDone: make(chan struct{})}
	actions := make(chan power.Action, 1)
	sys.Power = func(a power.Action) {
		select {
		case actions <- a:
		default: // one is already pending
		}
	}
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, power.Signals...)
	// Ctrl-Alt-Del sends SIGINT to PID 1 instead of an immediate reboot.
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_CAD_OFF)

	var sup atomic.Pointer[supervisor.Supervisor]
	booted := make(chan error, 1)
	go func() {
		defer func() { // a bug in the boot must not take PID 1 down
			if r := recover(); r != nil {
				booted <- fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		booted <- boot(ctx, env, sys, start, &sup)
	}()

	var a power.Action
	for waiting := true; waiting; {
		select {
		case err := <-booted:
			if err != nil {
				return err
			}
			booted = nil // done: only power requests from now on
		case a = <-actions:
			waiting = false
		case s := <-sigc:
			a = power.FromSignal(s)
			waiting = false
		}
	}
	logf("%s requested", a)
	force := make(chan struct{})
	go func() {
		select {
		case <-actions:
		case <-sigc:
		}
		close(force)
	}()
	stopAll := func() {
		if s := sup.Load(); s != nil {
			s.StopAll()
		}
	}
	sh := power.System(stopAll, logf)
	sh.Force = force
	if env.Hooks.Kexec != nil {
		sh.Kexec = func() bool { return env.Hooks.Kexec(sys) }
	}
	err := sh.Run(a)
	return fmt.Errorf("%s: %w", a, err)
}

// boot brings the node up to the console shell; Run's power loop runs
// beside it. It returns nil once the console is started, an error when
// the node cannot go on.
func boot(ctx context.Context, env Env, sys *System, start time.Duration, supp *atomic.Pointer[supervisor.Supervisor]) error {
	logf, p, request := sys.Logf, sys.path, sys.Power
	cmd, err := kcmdline.Read(p("/proc/cmdline"))
	if err != nil {
		sys.Warn("%v", err)
	}
	sys.Slot = cmd.Value(layout.CmdlineSlot, "unknown")
	sys.Live = cmd.Has(layout.CmdlineLive)
	debug := cmd.Has(layout.CmdlineDebug)
	// Stage 2 counts from where stage 1 handed over, so that switch_root
	// and loading /sbin/init are not lost between the two: kernel +
	// stage1 + stage2 = ready.
	if t, err := boottime.Read(p(layout.BootTimes)); err == nil {
		k, ok1 := t.Get(boottime.Kernel)
		s1, ok2 := t.Get(boottime.Stage1)
		if ok1 && ok2 && k+s1 < start {
			start = k + s1
		}
	}
	mark := boottime.NewSteps(env.Clock, start, debug, logf).Mark // per-step timing
	mark("stage 2 start")
	randomseed.Warm(randomseed.Linux{}) // a first boot has no seed

	skipped, err := mounts.Apply(Mounts(env.Root), env.Mount)
	if err != nil {
		return err
	}
	for _, e := range skipped {
		if debug {
			logf("optional mount skipped: %v", e)
		}
	}
	mark("mounts")
	cgroupsOK := true
	if _, err := cgroup.Setup(p("/sys/fs/cgroup"), "init", os.Getpid()); err != nil {
		sys.Warn("cgroup delegation: %v", err)
		cgroupsOK = false
	}

	rp := reaper.New(nil)
	sys.Go("reaper", func() { rp.Loop(ctx) })
	sys.Reaper = rp

	mark("cgroups")
	// Drivers for the hardware present now; the rest of the node set
	// (netfilter, bridge, drivers for absent hardware) loads after ready.
	early := 0 // drivers loaded before ready
	mods, err := coldplug.Open(layout.ModuleList, coldplug.Options{Root: p("/"), SysRoot: p("/sys"), Logf: logf})
	mark("module index read")
	if err != nil {
		sys.Warn("kernel modules: %v", err)
	} else {
		// Input drivers (the ACPI power button, keyboards, evdev) load
		// after the ready line: nothing before it reads them, and on one
		// CPU their loads delayed the NIC's.
		mods.Hold(coldplug.InputDriver)
		loaded, err := mods.Coldplug(false)
		early = len(loaded)
		if err != nil {
			sys.Warn("kernel modules: %v", err)
		}
		if debug {
			logf("drivers: %s", strings.Join(loaded, " "))
		}
	}
	mark("drivers loaded")
	if sys.Live {
		// Stage 1 mounted the ISO's FAT read-only there (or nothing, from
		// a CD); an installed disk's ESP is left alone.
		logf("live system: state on tmpfs, no boot counting, %s is the ISO's (read-only)", layout.ESPMount)
	} else {
		mountESP(sys, env.Mount)
	}
	mark("ESP mounted")

	wired, _ := netup.WiredInterfaces(p("/sys/class/net"))
	etcName, _ := os.ReadFile(p("/etc/hostname"))
	sys.Hostname = hostname.Choose(etcName, hostname.FirstMAC(p("/sys/class/net"), wired))
	if err := syscall.Sethostname([]byte(sys.Hostname)); err != nil {
		sys.Warn("set hostname: %v", err)
	}
	if err := hostname.WriteEtc(p("/etc"), sys.Hostname); err != nil {
		sys.Warn("%v", err)
	}
	if err := netup.LoopbackUp(); err != nil {
		sys.Warn("%v", err)
	}

	cgroupRoot := ""
	if cgroupsOK {
		cgroupRoot = p("/sys/fs/cgroup")
	}
	sup := supervisor.New(supervisor.Config{Reaper: rp, LogDir: p("/var/log"), CgroupRoot: cgroupRoot, Now: env.Now, Logf: logf})
	sys.Supervisor = sup
	supp.Store(sup)
	// Services started before the ready line (sshd, k3s) yield the CPU to
	// PID 1's boot until then (supervisor.LowPriority says why).
	sup.LowPriority(true)
	defer sup.LowPriority(false) // a boot that ends early, too
	sys.Control = control.NewServer()
	sys.Control.Handle("status", func(context.Context, control.Request) (any, error) {
		return sys.status(env.Clock()), nil
	})
	for _, a := range []power.Action{power.Poweroff, power.Reboot, power.RebootFirmware, power.Halt} {
		sys.Control.Handle(a.String(), func(context.Context, control.Request) (any, error) {
			request(a)
			return nil, nil
		})
	}
	sys.Go("control socket", func() {
		if err := sys.Control.Serve(ctx, p(layout.ControlSocket)); err != nil {
			sys.Warn("%v", err)
		}
	})

	mark("hostname, lo")
	runHooks(ctx, sys, env.Hooks.Boot, mark)
	mark("boot hooks")
	var dhcp DHCPSet // the default, every wired interface
	if env.Hooks.Network != nil {
		// A network config that failed before it decided (or panicked)
		// leaves the default, so a config error does not cut the node off.
		err = runHook(ctx, sys, Hook{Name: "network", Run: func(ctx context.Context, sys *System) (err error) {
			dhcp, err = env.Hooks.Network(ctx, sys)
			return err
		}})
		if err != nil {
			if dhcp.EveryWired() {
				sys.Warn("network config: %v (falling back to DHCP on every wired interface)", err)
			} else {
				sys.Warn("network config: %v", err)
			}
		}
	}
	bringUpNetwork(ctx, sys, dhcp, env.DHCPWait)
	mark("network up")
	runHooks(ctx, sys, env.Hooks.NetworkUp, mark)
	mark("network-up hooks")

	ready := env.Clock()
	if err := boottime.Append(p(layout.BootTimes), boottime.Entry{Name: boottime.Stage2, D: ready - start}, boottime.Entry{Name: boottime.Ready, D: ready}); err != nil {
		sys.Warn("%v", err)
	}
	st := sys.status(ready)
	fmt.Fprintf(env.Console, "\n%s\n%s\n", st.Summary(), st.ReadyLine())
	sup.LowPriority(false)
	runHooks(ctx, sys, env.Hooks.Ready, nil) // after the ready line

	sys.Go("late modules", func() {
		defer close(sys.modulesDone)
		if mods != nil {
			mods.Release()
			loaded, err := mods.Coldplug(false) // the input drivers held before ready
			if err != nil {
				sys.Warn("kernel modules: %v", err)
			}
			if debug {
				logf("drivers after ready: %s", strings.Join(loaded[min(early, len(loaded)):], " "))
			}
		}
		// The button's input device exists only once its driver (just
		// above) has probed; signals and the control socket are handled
		// from the start.
		n := power.WatchPowerButton(ctx, p("/dev/input"), func() { request(power.Poweroff) })
		sys.buttons.Store(int32(n) + 1)
		if n == 0 { // kestrel status says so too
			sys.Notef("no input devices: the power button will not be seen")
		}
		if _, err := mounts.Apply(LateMounts(env.Root), env.Mount); err != nil {
			sys.Warn("%v", err)
		}
		if mods == nil {
			return
		}
		defer mods.Close()
		if _, err := mods.LoadRest(); err != nil {
			sys.Warn("kernel modules: %v", err)
		}
		if debug {
			logf("all modules loaded %6.3fs", env.Clock().Seconds())
		}
	})

	// Leave a random seed for the next boot (waits for the CRNG on a
	// first boot, which had none).
	sys.Go("random seed", func() {
		if err := randomseed.Save(p(layout.RandomSeed), randomseed.Linux{}); err != nil {
			sys.Warn("%v", err)
		}
	})

	tty := console.Device(p("/sys"), p("/dev"), p("/dev/console"))
	consoleSpec := supervisor.Spec{Name: "console", Path: env.Shell, Args: []string{"-l"}, TTY: tty, Env: console.Env("linux")}
	if env.Hooks.ConsoleLogin != nil && env.Hooks.ConsoleLogin() && env.Login != "" {
		// busybox login: asks for a user and checks the password
		// against /etc/shadow (SHA-crypt), then runs the user's shell as
		// the user. Accounts without a password cannot log in here.
		//
		// The SSH server refuses passwords over 1024 bytes unhashed
		// (sshd.MaxPasswordLen); this path cannot be capped from Go, as
		// busybox reads and hashes the password itself. What bounds it:
		// busybox's bb_ask_noecho stops reading at 4095 bytes (MAX_LINE
		// 0xfff, busybox >= 1.26; the image has Debian's 1.35), and the
		// tty in canonical mode keeps at most 4095 bytes of a line
		// anyway. SHA-512 crypt of 4095 bytes takes ~90 ms here, against
		// ~19 ms for 1024 (BenchmarkVerifyLength in internal/shacrypt):
		// 5 times OpenSSH's bound, not the minutes of 256 KiB, and only
		// for whoever holds the console.
		consoleSpec.Path, consoleSpec.Args = env.Login, nil
	}
	if sys.Live && cmd.Value(layout.CmdlineMode, "") == layout.ModeInstall {
		// The ISO's Install entry: the installer instead of a shell (it
		// starts again if left without installing).
		consoleSpec.Path, consoleSpec.Args = layout.KestrelBin, []string{"install"}
	}
	if err := sup.Start(consoleSpec); err != nil {
		sys.Warn("console: %v", err)
	}
	return nil
}

// runHooks runs hooks in order. mark, when not nil, ends a kestrel.debug
// step after each one ("hook: <name>"), so that `make bench` shows what
// each costs.
func runHooks(ctx context.Context, sys *System, hooks []Hook, mark func(string)) {
	for _, h := range hooks {
		if err := runHook(ctx, sys, h); err != nil {
			sys.Warn("%s: %v", h.Name, err)
		}
		if mark != nil {
			mark("hook: " + h.Name)
		}
	}
}

// Go runs f in a goroutine of PID 1 that a panic does not take down
// with it: the panic becomes a warning naming the goroutine, as a hook's
// becomes its error. Hooks that start goroutines use it too.
func (s *System) Go(name string, f func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				s.Warn("%s: panic: %v", name, r)
			}
		}()
		f()
	}()
}

// runHook runs one hook; a panic in it is its error, not the end of PID 1.
func runHook(ctx context.Context, sys *System, h Hook) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return h.Run(ctx, sys)
}

// mountESP mounts the ESP read-write at layout.ESPMount, after checking
// it with the rootfs's fsck.fat (layout.FsckFAT): a power cut during an
// upgrade's ESP writes must not leave a FAT error that turns the mount
// read-only and blocks every later upgrade. What the check repaired or
// why it failed is a warning; the ESP is mounted either way.
func mountESP(sys *System, mount mounts.MountFunc) {
	devs, err := blockdev.List(sys.path("/sys"))
	if err == nil {
		err = esp.Mount(devs, esp.Options{
			Sys: sys.path("/sys"), Dev: sys.path("/dev"), Target: sys.path(layout.ESPMount),
			Check: esp.FsckFAT(sys.path(layout.FsckFAT)), Warn: sys.Warn,
		}, mount)
	}
	if err != nil {
		sys.Warn("ESP: %v", err)
	}
}

func bringUpNetwork(ctx context.Context, sys *System, dhcp DHCPSet, wait time.Duration) {
	var ifs []string // netup's nil: every wired interface
	if !dhcp.EveryWired() {
		if ifs = dhcp.Interfaces(); len(ifs) == 0 {
			return
		}
	}
	leases, err := netup.Up(ctx, netup.Config{
		SysClassNet: sys.path("/sys/class/net"), Interfaces: ifs, Timeout: wait, Hostname: sys.Hostname, Logf: sys.Logf,
		OnRenew: sys.renewed,
	})
	if err != nil {
		sys.Warn("network: %v", err)
	}
	sys.mu.Lock()
	sys.leases = leases
	sys.mu.Unlock()
	sys.writeResolvConf(leases)
}

// renewed records a renewed lease and rewrites resolv.conf.
func (s *System) renewed(l netup.Lease) {
	s.mu.Lock()
	for i := range s.leases {
		if s.leases[i].Iface == l.Iface {
			s.leases[i] = l
		}
	}
	all := slices.Clone(s.leases)
	s.mu.Unlock()
	s.writeResolvConf(all)
}

// writeResolvConf writes the static DNS servers, then those of leases.
// With neither, a resolv.conf already there (the image's) is kept.
func (s *System) writeResolvConf(leases []netup.Lease) {
	p := s.path("/etc/resolv.conf")
	ns, search := netup.DNS(s.StaticDNS(), leases)
	if len(ns) == 0 {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	if err := netconf.WriteResolvConf(p, ns, search); err != nil {
		s.Warn("%v", err)
	}
}

// status assembles the node's status at boot time now.
func (s *System) status(now time.Duration) status.Status {
	st := status.Status{Version: s.Version, Slot: s.Slot, Hostname: s.Hostname, Uptime: now}
	for _, l := range s.Leases() {
		st.Addrs = append(st.Addrs, l.Iface+" "+l.Addr.String())
		if st.IP == "" && l.Addr.IP.To4() != nil {
			st.IP = l.Addr.IP.String()
		}
	}
	if t, err := boottime.Read(s.path(layout.BootTimes)); err == nil {
		st.Kernel, _ = t.Get(boottime.Kernel)
		st.Stage1, _ = t.Get(boottime.Stage1)
		st.Stage2, _ = t.Get(boottime.Stage2)
		st.Ready, _ = t.Get(boottime.Ready)
	}
	if s.Supervisor != nil {
		st.Services = s.Supervisor.Status()
	}
	if n := int(s.buttons.Load()) - 1; n >= 0 {
		st.PowerButton = &n
	}
	s.mu.Lock()
	st.Warnings = slices.Clone(s.warnings)
	s.mu.Unlock()
	// Checked on every request, not recorded: it ends when space is freed.
	if msg, full := diskFull(s.path(layout.StateMount)); full {
		st.Warnings = append(st.Warnings, msg)
	}
	return st
}

// path returns p under the system's root.
func (s *System) path(p string) string {
	if s.root == "" {
		return p
	}
	return filepath.Join(s.root, p)
}
