// Package stage1 is Kestrel's /init in the initramfs: it finds the boot
// slot's root partition by GPT name, mounts it read-only (through
// dm-verity when the boot entry carries the root's hash), prepares the
// state partition (growing it to the end of the disk on first boot),
// builds /etc, /run, /tmp and the persistent bind mounts, then
// switch_roots and execs /sbin/init (stage 2).
//
// Every path, the clock and the mount call are fields of Env, and the
// mount sequence is a plan (Plan) that is pure data, so everything but
// the final switch_root is tested on the host.
//
// A root that fails verification is refused (see RefusedError): the
// slot's boot entry is demoted so the next boot falls back to the other
// slot. Only the blocks stage 1 and stage 2 read are verified at boot;
// dmverity.Check reads the rest.
//
// Limits: no encrypted state, no network root, MBR disks are not
// supported (slots are GPT partition names). If anything stage 1 cannot
// do without fails, Run returns an error that says what it looked for and
// what it found; the caller drops to a rescue shell rather than let the
// kernel panic.
package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/coldplug"
	"github.com/kestrel-os/kestrel/internal/node/boot/dmverity"
	"github.com/kestrel-os/kestrel/internal/node/boot/growpart"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/node/boot/randomseed"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// Env is everything stage 1 touches.
type Env struct {
	Console     io.Writer
	Proc        string // "/proc"
	Sys         string // "/sys"
	Dev         string // "/dev"
	Root        string // the initramfs root, "/"; the module list and modules are under it
	NewRoot     string // layout.NewRoot
	EtcStage    string // scratch mount point for the /etc tmpfs, e.g. "/.etc"
	Clock       boottime.Clock
	Mount       mounts.MountFunc
	WaitTimeout time.Duration // how long to wait for the partitions to appear

	// Entropy, if set, takes the random seed from the state partition
	// (layout.RandomSeed) so the CRNG is ready for stage 2.
	Entropy randomseed.Kernel

	// SwitchRoot makes NewRoot the root and execs init there; it only
	// returns on failure.
	SwitchRoot func(newRoot, init string) error

	// Unmount undoes Mount (the ESP is mounted only for Hooks).
	Unmount func(target string, flags int) error
	// Hooks let other packages take part in stage 1 (see hooks.go).
	Hooks Hooks
}

// Run performs stage 1. On success it does not return (SwitchRoot execs
// stage 2).
func Run(env Env) error {
	start := env.Clock()
	logf := func(format string, args ...any) {
		fmt.Fprintf(env.Console, "kestrel: "+format+"\n", args...)
	}
	if _, err := mounts.Apply(EarlyMounts(env.Proc, env.Sys, env.Dev), tolerateBusy(env.Mount)); err != nil {
		return err
	}
	cmd, err := kcmdline.Read(filepath.Join(env.Proc, "cmdline"))
	if err != nil {
		return err
	}
	debug := cmd.Has(layout.CmdlineDebug)
	mark := boottime.NewSteps(env.Clock, start, debug, logf).Mark // per-step timing
	mark("stage 1 start")
	if cmd.Has(layout.CmdlineLive) {
		return runLive(env, cmd, start, mark, debug, logf) // live.go
	}
	slot := cmd.Value(layout.CmdlineSlot, layout.Slots[0])
	if !slices.Contains(layout.Slots, slot) {
		return fmt.Errorf("kernel command line: %s=%q is not a slot (want one of %s)", layout.CmdlineSlot, slot, strings.Join(layout.Slots, ", "))
	}
	rescueWait := console.RescueTimeout(cmd, logf)
	vp, verified, verityErr := verity.FromCmdline(cmd.Get)
	fsMods := []string{"squashfs", "crc32c_generic", "crc32c", "ext4"}
	if verified {
		fsMods = append([]string{"dm_verity"}, fsMods...)
	}

	// Drivers for the hardware present load in the background while we
	// look for the partitions (drivers for devices that show up meanwhile,
	// a USB disk, load as they appear), and so do the filesystems stage 1
	// mounts, ahead of the rest of the list: on one CPU whatever loads
	// first is ready first. ext4 needs crc32c at mount time and there is
	// no modprobe in the initramfs to fetch it on demand, hence its name.
	mods, err := coldplug.Open(layout.ModuleList, coldplug.Options{Root: env.Root, SysRoot: env.Sys, Logf: logf})
	var poll func()
	fsLoaded := make(chan struct{})
	if err != nil {
		logf("warning: kernel modules: %v", err)
		close(fsLoaded)
	} else {
		defer mods.Close()
		fsMods = append(cpuHashModules(mods, env.Sys), fsMods...)
		mods.Start(false)
		poll = mods.Poll
		go func() {
			defer close(fsLoaded)
			if err := mods.LoadNow(fsMods...); err != nil {
				logf("warning: filesystem modules: %v", err)
			}
		}()
	}
	mark("modules started")

	rootName := layout.RootPartition(slot)
	ctx, cancel := context.WithTimeout(context.Background(), env.WaitTimeout)
	devs, err := blockdev.Wait(ctx, env.Sys, []string{rootName, layout.PartState}, 20*time.Millisecond, poll)
	cancel()
	<-fsLoaded
	mark("filesystems ready")
	// The rest of the list (the ESP's vfat for the hooks, overlay, a slow
	// SATA probe) goes on loading while the plan runs, and is waited for
	// before the hooks.
	loadsDone := make(chan struct{})
	waitLoads := func() {
		if mods == nil {
			return
		}
		<-loadsDone
	}
	if mods != nil {
		// isofs and loop are the live ISO's (live.go); nothing on an
		// installed system uses them, and the rootfs does not ship them.
		// Loading them anyway cost the boot their load time, on the one
		// CPU the plan and the hooks run on.
		mods.Skip("isofs", "loop")
		mods.Start(true)
		go func() {
			loaded, _ := mods.Wait()
			if debug {
				logf("modules: %s", strings.Join(loaded, " "))
			}
			close(loadsDone)
		}()
	}
	if err != nil {
		return &NotFoundError{Looking: fmt.Sprintf("GPT partitions %q (slot %s root) and %q", rootName, slot, layout.PartState),
			Waited: env.WaitTimeout, Err: err, Found: devs}
	}
	mark("partitions found")
	rootDev, _ := blockdev.ByPartName(devs, rootName)
	stateDev, _ := blockdev.ByPartName(devs, layout.PartState)
	refuse := func(err error) error {
		waitLoads() // vfat, for the ESP
		return refuseSlot(env, devs, slot, rescueWait, err, logf)
	}
	if verityErr != nil {
		return refuse(verityErr)
	}
	rootPath := rootDev.Path(env.Dev)
	if verified {
		d, err := dmverity.Open(filepath.Join(env.Dev, "mapper", "control"), env.Dev, dmverity.RootName, vp, rootPath)
		if err != nil {
			return refuse(fmt.Errorf("set up dm-verity over %s (GPT %q): %w", rootPath, rootName, err))
		}
		logf("root %s opened through dm-verity as %s (root hash %s)", rootDev.Name, d.Path, vp.RootHash)
		rootPath = d.Path
	} else {
		logf("warning: root %s is not verified (no %s on the kernel command line)", rootDev.Name, verity.CmdlineRootHash)
	}
	mark("root opened")
	// corrupt tells a verification failure from other mount errors.
	corrupt := func(err error) error {
		if !verified {
			return nil
		}
		st, serr := dmverity.TableStatus(filepath.Join(env.Dev, "mapper", "control"), dmverity.RootName)
		if serr != nil || !st.Corrupt() {
			return nil
		}
		return fmt.Errorf("root of slot %s (GPT %q, %s) fails dm-verity verification (status %q): %w", slot, rootName, rootDev.Path(env.Dev), st.Info, err)
	}

	grow := true
	if r, err := growpart.GrowDevice(filepath.Join(env.Dev, stateDev.Disk), layout.PartState); err != nil {
		logf("warning: cannot grow the state partition: %v", err)
		grow = false
	} else if r.Grown {
		logf("grew state partition %s from %s to %s", stateDev.Name,
			blockdev.HumanSize(int64(r.OldEnd-r.Start+1)*growpart.SectorSize), blockdev.HumanSize(r.NewSizeB))
	}

	mark("state checked")
	in := PlanInput{
		NewRoot: env.NewRoot, RootDev: rootPath, StateDev: stateDev.Path(env.Dev),
		StateMount: layout.StateMount, PersistentDirs: layout.PersistentDirs, EtcStage: env.EtcStage,
		Proc: env.Proc, Sys: env.Sys, Dev: env.Dev, GrowState: grow,
	}
	if env.Entropy != nil {
		in.RandomSeed = layout.RandomSeed
	}
	plan := Plan(in)
	if debug {
		logPlan(plan, logf)
	}
	ops := deviceOps(env, logf)
	ops.Resize = growpart.ResizeExt4
	ops.Check = func(dev string) (bool, error) { return CheckExt4(env.Root, dev) }
	ops.Seed = func(p string) error {
		_, err := randomseed.Load(p, env.Entropy)
		return err
	}
	if err := Execute(plan[:1], ops); err != nil {
		if cerr := corrupt(err); cerr != nil {
			return refuse(cerr)
		}
		return &NotFoundError{Looking: fmt.Sprintf("a squashfs root filesystem on %s (GPT %q, slot %s)", rootPath, rootName, slot),
			Err: err, Found: devs, Corrupt: true}
	}
	mark("root mounted")
	if err := Execute(plan[1:], ops); err != nil {
		if cerr := corrupt(err); cerr != nil {
			return refuse(cerr)
		}
		return err
	}
	mark("plan done")
	waitLoads()
	mark("modules loaded")
	debugf := func(string, ...any) {}
	if debug {
		debugf = logf
	}
	runHooks(env, devs, rootDev.Disk, logf, debugf)
	mark("initramfs hooks")

	end := env.Clock()
	run := filepath.Join(env.NewRoot, layout.RunDir)
	if err := os.MkdirAll(run, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", run, err)
	}
	if err := boottime.Append(filepath.Join(env.NewRoot, layout.BootTimes),
		boottime.Entry{Name: boottime.Kernel, D: start}, boottime.Entry{Name: boottime.Stage1, D: end - start}); err != nil {
		logf("warning: %v", err)
	}
	if debug {
		logf("slot %s: root %s, state %s; switching root after %.3fs", slot, rootDev.Name, stateDev.Name, (end - start).Seconds())
	}
	// The modules are loaded and the initramfs is about to become
	// unreachable: give its largest part back to the page allocator.
	os.RemoveAll(filepath.Join(env.Root, layout.ModulesDir))
	if err := env.SwitchRoot(env.NewRoot, layout.SbinInit); err != nil {
		return fmt.Errorf("switch to the root of slot %s: %w", slot, err)
	}
	return errors.New("switch_root returned")
}

// NotFoundError says what stage 1 looked for, what went wrong, and which
// block devices it did find, for the operator at the rescue shell.
type NotFoundError struct {
	Looking string
	Waited  time.Duration
	Err     error
	Found   []blockdev.Device
	Corrupt bool // found, but could not be mounted
}

func (e *NotFoundError) Error() string {
	var b strings.Builder
	if e.Corrupt {
		fmt.Fprintf(&b, "could not mount %s: %v\n", e.Looking, e.Err)
		b.WriteString("the partition exists but does not hold a valid squashfs (corrupt or empty slot?)\n")
	} else {
		fmt.Fprintf(&b, "looked for %s for %v: %v\n", e.Looking, e.Waited, e.Err)
	}
	b.WriteString("block devices found:\n")
	b.WriteString(blockdev.Describe(e.Found))
	return b.String()
}

func (e *NotFoundError) Unwrap() error { return e.Err }

// tolerateBusy accepts EBUSY from early mounts: a kernel with
// CONFIG_DEVTMPFS_MOUNT, or a rerun, may have mounted them already.
func tolerateBusy(m mounts.MountFunc) mounts.MountFunc {
	return func(source, target, fstype string, flags uintptr, data string) error {
		err := m(source, target, fstype, flags, data)
		if isBusy(err) {
			return nil
		}
		return err
	}
}

// cpuHashModules returns the hash code for the CPU's own instructions
// that is on the initramfs's list and that this CPU has, to load before
// dm-verity and ext4: each takes the best implementation registered when
// it sets up (dm-verity at table load, ext4 at mount) and keeps it. The
// kernel loads none of them by itself: sha256-generic is built in, so
// nothing asks for another. These are what udev's coldplug of the CPU's
// modalias loads on a Debian install; without them every block read from
// the root is hashed by sha256-generic. Names of all architectures: the
// list holds the image's.
//
// Not the plain assembler and NEON versions (sha256_arm64, sha256_arm),
// which have no CPU alias: under qemu's TCG they made arm boots slower
// (armv7: stage 1 +0.46 s and stage 2 +0.8 s, medians of 5), and nothing
// here could measure them on hardware. They load as the dependency of the
// SHA-2-instruction modules, on CPUs that have those.
func cpuHashModules(mods *coldplug.Loader, sys string) []string {
	return mods.ForCPU(coldplug.CPUAlias(sys),
		"sha256_ssse3", "crc32c_intel", // x86: SSSE3/AVX/AVX2 (and SHA-NI); SSE4.2
		"sha2_ce",     // arm64: the SHA-2 instructions
		"sha2_arm_ce") // 32-bit arm: ARMv8's SHA-2 instructions
}
