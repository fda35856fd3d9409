package stage1

// The live path: stage 1 of a boot from the ISO (layout.CmdlineLive on the
// ISO's boot entries, internal/build/isoimage). It differs from a disk
// boot in three places and shares the rest (modules, dm-verity, the mount
// plan, the hooks' config phase, switch_root):
//
//   - the root: the ISO is found by its ISO 9660 volume identifier on any
//     whole disk (a CD drive has no partitions; a USB stick the ISO was
//     written to is a whole disk whose first 32 KiB hold the hybrid
//     GPT), mounted read-only through a loop device, and its root image (squashfs + dm-verity
//     tree) opened through a read-only loop device and dm-verity with the
//     parameters of the boot entry, as on disk;
//   - state: a tmpfs (LivePlan), so nothing of the machine's disks is
//     touched and nothing survives a reboot;
//   - config: the ISO's FAT partition (layout.PartLiveESP, present when
//     the ISO is a USB disk) is mounted read-only at layout.ESPMount, so
//     its config.yaml is read like the ESP's; on a CD there is none, and
//     config comes from a NoCloud disk or the command line.
//
// No slot is refused or demoted (the ISO's entries are not counted), and
// the ISO stays mounted at layout.ISOMount for `kestrel install`.
//
// Limits: the ISO must be on a whole disk (not inside a partition, not a
// file on another filesystem); one ISO with the volume identifier may be
// present (two are refused as ambiguous).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/coldplug"
	"github.com/kestrel-os/kestrel/internal/node/boot/dmverity"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// ErrRescueRequested is returned when the command line asks for the
// rescue shell (layout.CmdlineRescue): the caller gives it.
var ErrRescueRequested = errors.New("rescue shell asked for on the kernel command line (" + layout.CmdlineRescue + ")")

// liveWait is the least time the live path waits for the ISO: a USB stick
// under emulation enumerates in seconds, not the disk's milliseconds.
const liveWait = 60 * time.Second

// isoStage is where the ISO is mounted in the initramfs before it moves
// into the new root.
const isoStage = "/.iso"

// runLive is Run for a boot from the ISO; start and mark are Run's.
func runLive(env Env, cmd kcmdline.Cmdline, start time.Duration, mark func(string), debug bool, logf func(string, ...any)) error {
	vp, verified, err := verity.FromCmdline(cmd.Get)
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	mods, err := coldplug.Open(layout.ModuleList, coldplug.Options{Root: env.Root, SysRoot: env.Sys, Logf: logf})
	var poll func()
	if err != nil {
		logf("warning: kernel modules: %v", err)
	} else {
		defer mods.Close()
		mods.Start(false)
		poll = mods.Poll
		if err := mods.LoadNow(append(cpuHashModules(mods, env.Sys), "isofs", "loop", "dm_verity", "squashfs", "vfat", "nls_cp437", "nls_ascii")...); err != nil {
			logf("warning: live modules: %v", err)
		}
		// The rest of the list (disk drivers for hardware present are
		// already loading) goes on meanwhile: an installer needs them all.
		mods.Start(true)
	}
	if cmd.Has(layout.CmdlineRescue) {
		if mods != nil {
			mods.Wait()
		}
		return ErrRescueRequested
	}
	mark("modules started")

	ctx, cancel := context.WithTimeout(context.Background(), max(env.WaitTimeout, liveWait))
	iso, devs, err := WaitISO(ctx, env.Sys, env.Dev, layout.ISOVolumeID, 50*time.Millisecond, poll)
	cancel()
	if err != nil {
		return &NotFoundError{Looking: fmt.Sprintf("an ISO 9660 volume %q on a whole disk (CD drive or USB stick)", layout.ISOVolumeID),
			Waited: max(env.WaitTimeout, liveWait), Err: err, Found: devs}
	}
	logf("live: ISO %s on %s", layout.ISOVolumeID, iso.Path(env.Dev))
	// Through a loop device: a filesystem mounted from the disk itself
	// claims it, and then its FAT partition (USB) cannot be mounted
	// ("device or resource busy"); a loop device claims nothing.
	isoLoop, err := AttachLoop(env.Dev, iso.Path(env.Dev))
	if err != nil {
		return fmt.Errorf("live: ISO %s: %w", iso.Path(env.Dev), err)
	}
	isoMount := filepath.Join(env.Root, isoStage)
	if err := (mounts.Mount{Source: isoLoop, Target: isoMount, FSType: "iso9660", Mode: 0o755,
		Flags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV}).Do(env.Mount); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	rootImage := filepath.Join(isoMount, layout.ISORootfs)
	rootPath, err := AttachLoop(env.Dev, rootImage)
	if err != nil {
		return fmt.Errorf("live: root image %s: %w", layout.ISORootfs, err)
	}
	if verified {
		d, err := dmverity.Open(filepath.Join(env.Dev, "mapper", "control"), env.Dev, dmverity.RootName, vp, rootPath)
		if err != nil {
			return fmt.Errorf("live: dm-verity over %s (%s): %w", rootPath, layout.ISORootfs, err)
		}
		logf("live: root %s opened through dm-verity as %s (root hash %s)", layout.ISORootfs, d.Path, vp.RootHash)
		rootPath = d.Path
	} else {
		logf("warning: live root is not verified (no %s on the kernel command line)", verity.CmdlineRootHash)
	}
	mark("root opened")

	plan := LivePlan(PlanInput{
		NewRoot: env.NewRoot, RootDev: rootPath, StateMount: layout.StateMount, PersistentDirs: layout.PersistentDirs,
		EtcStage: env.EtcStage, Proc: env.Proc, Sys: env.Sys, Dev: env.Dev,
	})
	if debug {
		logPlan(plan, logf)
	}
	if err := Execute(plan, deviceOps(env, logf)); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	mark("plan done")
	// The ISO stays mounted for kestrel install, inside the new root.
	if err := (mounts.Mount{Source: isoMount, Target: filepath.Join(env.NewRoot, layout.ISOMount), Mode: 0o755, Flags: syscall.MS_MOVE}).Do(env.Mount); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	if mods != nil {
		if loaded, _ := mods.Wait(); debug {
			logf("modules: %s", strings.Join(loaded, " "))
		}
	}
	mark("modules loaded")
	liveHooks(env, iso, logf)
	mark("initramfs hooks")

	end := env.Clock()
	if err := boottime.Append(filepath.Join(env.NewRoot, layout.BootTimes),
		boottime.Entry{Name: boottime.Kernel, D: start}, boottime.Entry{Name: boottime.Stage1, D: end - start}); err != nil {
		logf("warning: %v", err)
	}
	os.RemoveAll(filepath.Join(env.Root, layout.ModulesDir))
	if err := env.SwitchRoot(env.NewRoot, layout.SbinInit); err != nil {
		return fmt.Errorf("live: switch root: %w", err)
	}
	return errors.New("switch_root returned")
}

// LivePlan is Plan with the state partition replaced by a tmpfs: no check,
// no growth, nothing of a disk.
func LivePlan(in PlanInput) []Step {
	in.StateDev, in.GrowState, in.RandomSeed = "tmpfs", false, ""
	state := filepath.Join(in.NewRoot, in.StateMount)
	var out []Step
	for _, s := range Plan(in) {
		switch {
		case s.Op == OpCheck:
			continue
		case s.Op == OpMount && s.Mount.Target == state:
			s.Mount = mounts.Mount{Source: "tmpfs", Target: state, FSType: "tmpfs", Flags: stateFlags, Data: "mode=0755"}
		}
		out = append(out, s)
	}
	return out
}

// liveHooks mounts the ISO's FAT partition (USB) read-only at
// layout.ESPMount in the new root, where stage 2's config sources look for
// config.yaml, and runs the initramfs hooks with it.
func liveHooks(env Env, iso blockdev.Device, logf func(string, ...any)) {
	h := HookEnv{NewRoot: env.NewRoot, Logf: logf}
	devs, err := blockdev.List(filepath.Join(env.NewRoot, "sys"))
	if err != nil {
		logf("warning: live: %v", err)
	}
	var fat []blockdev.Device
	for _, d := range devs {
		if d.Disk == iso.Name && d.PartName == layout.PartLiveESP {
			fat = append(fat, d)
		}
	}
	target := filepath.Join(env.NewRoot, layout.ESPMount)
	o := esp.Options{Sys: filepath.Join(env.NewRoot, "sys"), Dev: filepath.Join(env.NewRoot, "dev"), Target: target, ReadOnly: true, Name: layout.PartLiveESP}
	switch {
	case len(fat) == 0:
		logf("live: no %s partition on %s (a CD): config from a NoCloud disk or the command line", layout.PartLiveESP, iso.Name)
	default:
		if err := esp.Mount(fat, o, env.Mount); err != nil {
			logf("warning: live: config partition: %v", err)
		} else {
			h.ESP = target
		}
	}
	if env.Hooks.Initramfs == nil {
		return
	}
	if err := env.Hooks.Initramfs(h); err != nil {
		logf("warning: initramfs phase: %v", err)
	}
}

// WaitISO polls every whole disk under sys for an ISO 9660 primary volume
// descriptor with volume identifier id until one shows up or ctx ends. It
// returns the disk and the last listing. tick runs before each look, as in
// blockdev.Wait. Two disks with the volume are an error.
func WaitISO(ctx context.Context, sys, dev, id string, poll time.Duration, tick func()) (blockdev.Device, []blockdev.Device, error) {
	for {
		if tick != nil {
			tick()
		}
		devs, err := blockdev.List(sys)
		if err == nil {
			var found []blockdev.Device
			for _, d := range devs {
				if d.IsPartition() {
					continue
				}
				if v, err := VolumeID(d.Path(dev)); err == nil && v == id {
					found = append(found, d)
				}
			}
			switch len(found) {
			case 1:
				return found[0], devs, nil
			case 0:
				err = fmt.Errorf("no disk holds it")
			default:
				return blockdev.Device{}, devs, fmt.Errorf("ISO volume %q is on %s and %s: detach one", id, found[0].Name, found[1].Name)
			}
		}
		select {
		case <-ctx.Done():
			return blockdev.Device{}, devs, err
		case <-time.After(poll):
		}
	}
}

// VolumeID reads the volume identifier of the ISO 9660 primary volume
// descriptor (sector 16 of 2048 bytes: type 1, "CD001", identifier at
// byte 40, 32 characters padded with spaces) of the device or file at
// path. Read by hand: it is 40 bytes at a fixed place, and a library
// would mean reading the whole directory tree.
func VolumeID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	pvd := make([]byte, 72)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		return "", err
	}
	if pvd[0] != 1 || !bytes.Equal(pvd[1:6], []byte("CD001")) {
		return "", fmt.Errorf("%s: no ISO 9660 primary volume descriptor", path)
	}
	return strings.TrimRight(string(pvd[40:72]), " "), nil
}

// AttachLoop attaches file (a regular file or a block device) to a free
// loop device, read-only, and returns
// the device node under dev. With x/sys rather than u-root's
// pkg/mount/loop, which opens /dev itself and read-write first.
func AttachLoop(dev, file string) (string, error) {
	ctl, err := os.OpenFile(filepath.Join(dev, "loop-control"), os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("loop: %w", err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("loop: get a free device: %w", err)
	}
	path := filepath.Join(dev, fmt.Sprintf("loop%d", n))
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	l, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return "", fmt.Errorf("loop: %w", err)
	}
	defer l.Close()
	cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY
	if err := unix.IoctlLoopConfigure(int(l.Fd()), &cfg); err != nil {
		return "", fmt.Errorf("loop: attach %s to %s: %w", file, path, err)
	}
	return path, nil
}
