package coldplug

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/u-root/u-root/pkg/kmodule"
)

// Loader loads the modules of one list in two steps: Coldplug loads the
// drivers for devices present now (matching each device's modalias
// against modules.alias, repeated until no new device appears, the way
// udev's coldplug does) and LoadRest loads everything else in the list.
// Boot code calls Coldplug before it needs the hardware and LoadRest when
// it can afford to, so a node set of a hundred modules (netfilter,
// bridges, NIC drivers for hardware this box does not have) does not
// stand between power-on and a working network.
//
// A module counts as a driver when modules.alias gives it a pattern on a
// device bus (pci:, usb:, virtio:, acpi*:, input:, ...); a module without
// one (filesystems, crypto, netfilter) only loads with LoadRest, or with
// Coldplug(true).
//
// Without a modules.alias next to modules.dep, Coldplug loads the whole
// list, as Load does.
//
// Limits: no hotplug events after boot (a device that appears later gets
// its driver only if LoadRest loaded it anyway, which it does for every
// driver in the list); aliases are matched with path.Match, which
// treats '/' specially, a character modaliases do not contain.
type Loader struct {
	o       Options
	names   []string // the list, in order
	prober  *kmodule.Prober
	aliases map[string][]alias  // module name (underscores) -> device patterns
	isDep   map[string]bool     // modules another module depends on
	deps    map[string][]string // module name -> its dependencies, as modules.dep lists them
	paths   map[string]string   // module name -> its file, as modules.dep names it ("kernel/fs/ext4/ext4.ko")
	// noAliases: modules.alias is missing, so drivers cannot be told
	// from the rest and Coldplug loads the whole list.
	noAliases bool

	// newDevices returns modaliases of devices that appeared since the
	// last call (from kernel uevents), or of all devices (a sysfs scan,
	// when no uevent socket could be opened).
	newDevices  func() []string
	closeEvents func()
	evMu        sync.Mutex // one reader of newDevices at a time

	mu       sync.Mutex
	hold     func(path string) bool // drivers Coldplug and Poll leave for later (Hold)
	done     map[string]bool
	loaded   []string
	errs     []error
	inflight sync.WaitGroup
}

type alias struct {
	pattern string
	literal string // pattern up to its first wildcard: a cheap prefix test
}

// deviceBuses are the modalias prefixes of hardware; modules.alias also
// holds aliases like "fs-ext4" or "crypto-crc32c", which are not hardware.
var deviceBuses = []string{"pci", "usb", "virtio", "acpi", "platform", "of", "input", "hid", "sdio", "mmc",
	"scsi", "pnp", "serio", "i2c", "spi", "dmi", "cpu", "mdio", "pcmcia", "amba", "vmbus", "xen", "mhi", "ieee1394", "wmi"}

// Open reads the list at listPath (inside o.Root), modules.dep and
// modules.alias.
func Open(listPath string, o Options) (*Loader, error) {
	names, err := ReadList(filepath.Join(o.Root, listPath))
	if err != nil {
		return nil, err
	}
	l := &Loader{o: o, names: names, aliases: map[string][]alias{}, isDep: map[string]bool{}, deps: map[string][]string{}, paths: map[string]string{}, done: map[string]bool{}}
	if len(names) == 0 {
		return l, nil
	}
	l.prober, err = kmodule.NewProber(kmodule.ProbeOpts{RootDir: o.Root, KVer: o.KVer})
	if err != nil {
		return nil, fmt.Errorf("modules.dep under %s: %w", o.Root, err)
	}
	dir, err := moduleDir(o)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[norm(n)] = true
	}
	if err := l.readDeps(filepath.Join(dir, "modules.dep")); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		l.noAliases = true
		return l, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 3 || fl[0] != "alias" || !want[norm(fl[2])] || !isDevicePattern(fl[1]) {
			continue
		}
		lit := fl[1]
		if i := strings.IndexAny(lit, "*?["); i >= 0 {
			lit = lit[:i]
		}
		m := norm(fl[2])
		l.aliases[m] = append(l.aliases[m], alias{pattern: fl[1], literal: lit})
	}
	return l, sc.Err()
}

func moduleDir(o Options) (string, error) {
	kver := o.KVer
	if kver == "" {
		var err error
		if kver, err = uname(); err != nil {
			return "", err
		}
	}
	for _, d := range []string{"/lib/modules", "/usr/lib/modules"} {
		p := filepath.Join(o.Root, d, kver)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no module directory for kernel %s under %s", kver, o.Root)
}

func isDevicePattern(p string) bool {
	bus, _, ok := strings.Cut(p, ":")
	if !ok {
		return false
	}
	bus = strings.TrimRight(bus, "*")
	return slices.Contains(deviceBuses, bus)
}

func norm(name string) string { return strings.ReplaceAll(name, "-", "_") }

func (l *Loader) readDeps(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("modules.dep: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, deps, _ := strings.Cut(sc.Text(), ":")
		l.paths[modName(mod)] = mod
		for _, d := range strings.Fields(deps) {
			l.isDep[modName(d)] = true
			l.deps[modName(mod)] = append(l.deps[modName(mod)], modName(d))
		}
	}
	return sc.Err()
}

// modName turns "kernel/fs/fat/fat.ko.xz" into "fat".
func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return norm(b)
}

// IsDriver reports whether the module has hardware aliases.
func (l *Loader) IsDriver(name string) bool { return len(l.aliases[norm(name)]) > 0 }

// Coldplug loads the drivers that match a device present now, and the
// drivers of devices those make appear, until nothing new shows up. With
// all, it also loads every module that is not a driver and that no other
// module depends on (filesystems, not the libraries of drivers, which
// load with their driver). Modules load concurrently, so a driver that
// waits for its hardware (ahci probing ports) does not hold up the
// others. It returns the modules it loaded, in the order they finished.
func (l *Loader) Coldplug(all bool) ([]string, error) {
	l.Start(all)
	return l.Wait()
}

// Start begins what Coldplug does and returns at once; Wait waits for it.
func (l *Loader) Start(all bool) {
	if l.newDevices == nil {
		l.newDevices, l.closeEvents = openUevents(l.o.SysRoot)
	}
	devs := DeviceAliases(l.o.SysRoot)
	l.startMatching(devs, all)
}

// Poll starts the drivers for devices that appeared since the last look
// (cheap with uevents: nothing to read, nothing done).
func (l *Loader) Poll() {
	if l.newDevices == nil {
		return
	}
	l.evMu.Lock()
	devs := l.newDevices()
	l.evMu.Unlock()
	if len(devs) > 0 {
		l.startMatching(devs, false)
	}
}

// Wait waits until no load is in flight and returns what loaded so far
// and the errors so far.
func (l *Loader) Wait() ([]string, error) {
	l.inflight.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.loaded), errors.Join(l.errs...)
}

// Close stops watching for new devices.
func (l *Loader) Close() {
	l.evMu.Lock()
	defer l.evMu.Unlock()
	if l.closeEvents != nil {
		l.closeEvents()
		l.closeEvents = nil
	}
}

func (l *Loader) startMatching(devs []string, all bool) {
	l.mu.Lock()
	var next []string
	for _, n := range l.names {
		if l.done[norm(n)] {
			continue
		}
		if l.hold != nil && l.hold(l.paths[norm(n)]) {
			continue
		}
		if l.noAliases || (all && !l.IsDriver(n) && !l.isDep[norm(n)]) || l.matches(n, devs) {
			l.done[norm(n)] = true
			next = append(next, n)
		}
	}
	l.inflight.Add(len(next))
	l.mu.Unlock()
	for _, n := range next {
		go func() {
			defer l.inflight.Done()
			err := l.load(n, "")
			l.mu.Lock()
			l.loaded = append(l.loaded, n)
			if err != nil {
				l.errs = append(l.errs, err)
			}
			l.mu.Unlock()
			// The devices this driver created have sent their uevents
			// by now: start their drivers before counting this one done,
			// so Wait cannot return in between.
			l.Poll()
		}()
	}
}

// LoadNow loads the named modules that are on the list (each with its
// dependencies), one after the other, and returns when they are loaded:
// what the caller cannot go on without, such as the filesystems stage 1
// mounts. On one CPU, loading them ahead of everything else is what makes
// them ready soonest. A name already started by Start is not loaded again
// (and not waited for): give LoadNow modules Start(false) does not take,
// that is, not hardware drivers.
//
// They load with the kernel's async_probe parameter (AsyncProbe), and so
// do their dependencies, deepest first: a module loaded without it ends
// its finit_module with async_synchronize_full(), a wait for every
// asynchronous probe in the system. A filesystem has nothing to probe, but
// would wait for the disk controllers Start loaded beside it: in qemu the
// AHCI driver's port probing kept ext4's load waiting about 0.3 s. Only
// modules that register no device drivers belong here: async_probe also
// makes a driver's probing asynchronous.
func (l *Loader) LoadNow(names ...string) error {
	l.mu.Lock()
	var next []string
	take := func(n string) {
		if l.done[norm(n)] {
			return
		}
		l.done[norm(n)] = true
		next = append(next, norm(n))
	}
	for _, n := range names {
		if l.done[norm(n)] || !slices.ContainsFunc(l.names, func(m string) bool { return norm(m) == norm(n) }) {
			continue
		}
		for _, d := range slices.Backward(l.deps[norm(n)]) {
			take(d)
		}
		take(n)
	}
	l.mu.Unlock()
	var errs []error
	for _, n := range next {
		err := l.load(n, AsyncProbe)
		l.mu.Lock()
		l.loaded = append(l.loaded, n)
		if err != nil {
			l.errs = append(l.errs, err)
			errs = append(errs, err)
		}
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}

// AsyncProbe is the module parameter LoadNow loads with. Every module
// takes it (the kernel's load_module handles it for all of them); it
// sets the module's async_probe_requested.
const AsyncProbe = "async_probe=1"

// Skip marks the named modules as done without loading them: Start,
// LoadNow and LoadRest leave them alone (a dependency of another module
// still loads with it).
func (l *Loader) Skip(names ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		l.done[norm(n)] = true
	}
}

// Hold keeps the modules for which later(path) is true (path as
// modules.dep names the module: "kernel/drivers/input/evdev.ko") out of
// Coldplug and Poll until Release: drivers for hardware that is present but
// not needed yet (a power button before the node is ready). LoadRest
// loads them regardless.
func (l *Loader) Hold(later func(path string) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hold = later
}

// Release ends Hold; call Coldplug again to load the held drivers.
func (l *Loader) Release() { l.Hold(nil) }

// InputDriver reports whether the module at path (as modules.dep names
// it) drives input devices: keyboards, HID, the event interface, the ACPI
// power button. Stage 2 holds them until the node is ready.
func InputDriver(path string) bool {
	return strings.HasPrefix(path, "kernel/drivers/input/") || strings.HasPrefix(path, "kernel/drivers/hid/") ||
		path == "kernel/drivers/acpi/button.ko" || strings.HasPrefix(path, "kernel/drivers/acpi/button.ko.")
}

// LoadRest loads every module of the list not loaded yet.
// It waits for loads Coldplug started first, and loads one module at a
// time: it runs while the node works, and should not crowd it.
func (l *Loader) LoadRest() (int, error) {
	l.inflight.Wait()
	var errs []error
	n := 0
	for _, name := range l.Pending() {
		l.mu.Lock()
		l.done[norm(name)] = true
		l.mu.Unlock()
		if err := l.load(name, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Pending returns the modules of the list not loaded yet.
func (l *Loader) Pending() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, n := range l.names {
		if !l.done[norm(n)] {
			out = append(out, n)
		}
	}
	return out
}

func (l *Loader) matches(name string, devs []string) bool {
	for _, a := range l.aliases[norm(name)] {
		for _, d := range devs {
			if !strings.HasPrefix(d, a.literal) {
				continue
			}
			if ok, _ := path.Match(a.pattern, d); ok {
				return true
			}
		}
	}
	return false
}

// load probes one module with its parameters (the caller marked it done,
// so a module that fails is not retried).
func (l *Loader) load(name, params string) error {
	if l.o.DryRun != nil {
		l.o.DryRun(name, params)
		return nil
	}
	if err := l.prober.Probe(name, params); err != nil {
		if builtin(l.o.SysRoot, name) || errors.Is(err, errNoDevice) {
			return nil
		}
		if l.o.Logf != nil {
			l.o.Logf("module %s: %v", name, err)
		}
		return fmt.Errorf("module %s: %w", name, err)
	}
	return nil
}

// CPUAlias returns the CPU's modalias
// ("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,..."), which
// names the CPU's features by number, from sysRoot's
// devices/system/cpu/modalias; "" when the kernel has none (built
// without GENERIC_CPU_AUTOPROBE). DeviceAliases leaves it out: the
// modules that match it (the CPU's own crypto and checksum code) load
// where the boot asks for them, with ForCPU.
func CPUAlias(sysRoot string) string {
	b, err := os.ReadFile(filepath.Join(sysRoot, "devices", "system", "cpu", "modalias"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ForCPU returns, in order, those of names that are on the list and that
// the CPU described by cpuAlias (CPUAlias) can run: a module with "cpu:"
// aliases when one of them matches, a module with no hardware alias at
// all always (an architecture's assembler version of an algorithm runs
// on all its CPUs: sha256-arm), a driver for other hardware never.
// Without modules.alias it returns every one on the list: a module the
// CPU cannot run fails to load with ENODEV, which load tolerates.
func (l *Loader) ForCPU(cpuAlias string, names ...string) []string {
	var out []string
	for _, n := range names {
		if !slices.ContainsFunc(l.names, func(m string) bool { return norm(m) == norm(n) }) {
			continue
		}
		var cpu []alias
		for _, a := range l.aliases[norm(n)] {
			if strings.HasPrefix(a.pattern, "cpu:") {
				cpu = append(cpu, a)
			}
		}
		switch {
		case l.noAliases || len(l.aliases[norm(n)]) == 0:
			out = append(out, n)
			continue
		case len(cpu) == 0:
			continue // a driver for other hardware
		}
		for _, a := range cpu {
			if ok, _ := path.Match(a.pattern, cpuAlias); ok {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// DeviceAliases returns the modalias of every device on a bus and of
// every input device, from sysfs.
func DeviceAliases(sysRoot string) []string {
	var out []string
	seen := map[string]bool{}
	for _, glob := range []string{"bus/*/devices/*/modalias", "class/input/*/modalias"} {
		files, _ := filepath.Glob(filepath.Join(sysRoot, glob))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, a := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if a != "" && !seen[a] {
					seen[a] = true
					out = append(out, a)
				}
			}
		}
	}
	return out
}
