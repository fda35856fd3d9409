package stage1

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

// Op is the kind of one plan step.
type Op int

// Plan step kinds.
const (
	OpMount  Op = iota // Mount
	OpMkdir            // create Path with Mode
	OpCopy             // copy the tree From into To
	OpResize           // grow the ext4 on Device mounted at Path to fill Device
	OpSeed             // credit the random seed at Path to the kernel
	OpCheck            // e2fsck -p the ext4 on Device before it is mounted
)

// Step is one thing stage 1 does to assemble the new root.
type Step struct {
	Op     Op
	Mount  mounts.Mount
	Path   string
	Mode   uint32
	From   string
	To     string
	Device string
}

func (s Step) String() string {
	switch s.Op {
	case OpMount:
		return "mount " + s.Mount.String()
	case OpMkdir:
		return fmt.Sprintf("mkdir %s (%#o)", s.Path, s.Mode)
	case OpCopy:
		return fmt.Sprintf("copy %s -> %s", s.From, s.To)
	case OpResize:
		return fmt.Sprintf("grow ext4 on %s at %s", s.Device, s.Path)
	case OpSeed:
		return "load random seed " + s.Path
	case OpCheck:
		return "check ext4 on " + s.Device
	}
	return fmt.Sprintf("op %d", int(s.Op))
}

// PlanInput is what the mount plan depends on.
type PlanInput struct {
	NewRoot        string   // where the new root is assembled (layout.NewRoot)
	RootDev        string   // slot's squashfs partition, e.g. /dev/vda2
	StateDev       string   // state ext4 partition, e.g. /dev/vda4
	StateMount     string   // layout.StateMount, inside the new root
	PersistentDirs []string // layout.PersistentDirs
	EtcStage       string   // initramfs directory where the /etc tmpfs is filled
	Proc, Sys, Dev string   // the initramfs's API mounts, moved into the new root
	GrowState      bool     // grow the state filesystem online after mounting it
	RandomSeed     string   // seed file inside the new root ("": none)
}

// Plan returns, in order, every step that turns the initramfs into a
// ready new root. It is pure: the order and flags are table tested.
//
// Why this order: the squashfs first (everything else mounts inside it);
// state before the bind mounts from it; /etc is filled on a tmpfs staged
// in the initramfs because a tmpfs mounted straight onto /etc would hide
// the defaults it must be filled from; the API filesystems move last, as
// nothing in stage 1 needs them afterwards.
func Plan(in PlanInput) []Step {
	nr := func(p string) string { return filepath.Join(in.NewRoot, p) }
	state := nr(in.StateMount)
	steps := []Step{
		{Op: OpMount, Mount: mounts.Mount{Source: in.RootDev, Target: in.NewRoot, FSType: "squashfs", Flags: syscall.MS_RDONLY}},
		// The check runs where e2fsck is in the initramfs (Ops.Check says);
		// either way errors=remount-ro: an error found later stops writes
		// instead of spreading damage, and stage 2 reports the state
		// read-only.
		{Op: OpCheck, Device: in.StateDev},
		{Op: OpMount, Mount: mounts.Mount{Source: in.StateDev, Target: state, FSType: "ext4", Flags: stateFlags, Data: "errors=remount-ro"}},
	}
	if in.GrowState {
		steps = append(steps, Step{Op: OpResize, Device: in.StateDev, Path: state})
	}
	for _, d := range in.PersistentDirs {
		mode := uint32(0o755)
		if d == "root" {
			mode = 0o700
		}
		src := filepath.Join(state, d)
		steps = append(steps,
			Step{Op: OpMkdir, Path: src, Mode: mode},
			Step{Op: OpMount, Mount: mounts.Mount{Source: src, Target: nr(d), Flags: syscall.MS_BIND}},
			// A bind mount ignores flags other than MS_REC when it is
			// made; they take effect on a remount of it.
			Step{Op: OpMount, Mount: mounts.Mount{Source: src, Target: nr(d), Flags: syscall.MS_REMOUNT | syscall.MS_BIND | stateFlags}},
		)
	}
	if in.RandomSeed != "" {
		steps = append(steps, Step{Op: OpSeed, Path: nr(in.RandomSeed)})
	}
	steps = append(steps,
		Step{Op: OpMount, Mount: mounts.Mount{Source: "tmpfs", Target: nr("run"), FSType: "tmpfs", Flags: syscall.MS_NOSUID | syscall.MS_NODEV, Data: "mode=0755"}},
		Step{Op: OpMount, Mount: mounts.Mount{Source: "tmpfs", Target: nr("tmp"), FSType: "tmpfs", Flags: syscall.MS_NOSUID | syscall.MS_NODEV, Data: "mode=1777"}},
		Step{Op: OpMount, Mount: mounts.Mount{Source: "tmpfs", Target: in.EtcStage, FSType: "tmpfs", Flags: syscall.MS_NOSUID | syscall.MS_NODEV, Data: "mode=0755"}},
		Step{Op: OpCopy, From: nr("etc"), To: in.EtcStage},
		Step{Op: OpMount, Mount: mounts.Mount{Source: in.EtcStage, Target: nr("etc"), Flags: syscall.MS_MOVE}},
		Step{Op: OpMount, Mount: mounts.Mount{Source: in.Dev, Target: nr("dev"), Flags: syscall.MS_MOVE}},
		Step{Op: OpMount, Mount: mounts.Mount{Source: in.Proc, Target: nr("proc"), Flags: syscall.MS_MOVE}},
		Step{Op: OpMount, Mount: mounts.Mount{Source: in.Sys, Target: nr("sys"), Flags: syscall.MS_MOVE}},
	)
	return steps
}

// stateFlags are the state partition's mount flags, and those of /var,
// /home and /root bound from it. nosuid and nodev: a setuid binary or a
// device node that someone with the disk in hand (or a bug) put on state
// gives no one root. Not noexec: k3s unpacks its own binaries (containerd,
// runc, CNI plugins) under /var/lib/rancher/k3s/data and runs them there.
// Containers are unaffected: containerd's overlayfs snapshotter gives each
// container root its own overlay mount, whose flags are its own, so a
// setuid binary or a device node in an image still works inside it (checked
// with an overlay whose lower directory is on a nosuid,nodev mount); only
// containerd's "native" snapshotter, which bind-mounts snapshots and which
// k3s does not use by default, would lose setuid in images.
const stateFlags = syscall.MS_NOATIME | syscall.MS_NOSUID | syscall.MS_NODEV

// EarlyMounts are the API filesystems stage 1 needs before anything else.
func EarlyMounts(proc, sys, dev string) []mounts.Mount {
	return []mounts.Mount{
		{Source: "proc", Target: proc, FSType: "proc", Flags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
		{Source: "sysfs", Target: sys, FSType: "sysfs", Flags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC},
		{Source: "devtmpfs", Target: dev, FSType: "devtmpfs", Flags: syscall.MS_NOSUID, Data: "mode=0755"},
	}
}

// Ops are the side effects a plan needs; production uses the real ones,
// tests record calls.
type Ops struct {
	Mount  mounts.MountFunc
	Mkdir  func(path string, mode uint32) error
	Copy   func(from, to string) error
	Resize func(dev, mountPoint string) (from, to uint64, err error)
	Seed   func(path string) error // nil: skip
	// Check runs e2fsck -p on dev; nil, or found false, when the
	// initramfs has no e2fsck. A check that could not repair everything
	// is a warning: the state is mounted anyway (errors=remount-ro), so
	// the node stays reachable to repair it.
	Check func(dev string) (found bool, err error)
	Logf  func(format string, args ...any)
}

// deviceOps are the Ops every boot's plan uses on the device (mount,
// mkdir, copy, log); the installed boot adds the state partition's.
func deviceOps(env Env, logf func(string, ...any)) Ops {
	return Ops{
		Mount: env.Mount,
		Mkdir: func(p string, m uint32) error { return os.MkdirAll(p, os.FileMode(m)) },
		Copy:  CopyTree,
		Logf:  logf,
	}
}

// logPlan prints the plan's steps, one a line, for kestrel.debug.
func logPlan(plan []Step, logf func(string, ...any)) {
	for _, s := range plan {
		logf("plan: %s", s)
	}
}

// Execute runs steps in order and stops at the first failure, except a
// failed online resize or random seed, which are logged: a node with a
// small state partition or a slow CRNG still boots.
func Execute(steps []Step, ops Ops) error {
	for _, s := range steps {
		var err error
		switch s.Op {
		case OpMount:
			err = s.Mount.Do(ops.Mount)
		case OpMkdir:
			err = ops.Mkdir(s.Path, s.Mode)
		case OpCopy:
			err = ops.Copy(s.From, s.To)
		case OpCheck:
			found := false
			var cerr error
			if ops.Check != nil {
				found, cerr = ops.Check(s.Device)
			}
			switch {
			case !found:
				ops.Logf("warning: state filesystem %s not checked: no e2fsck in the initramfs (mounted errors=remount-ro)", s.Device)
			case cerr != nil:
				ops.Logf("warning: state filesystem %s: %v (mounted errors=remount-ro)", s.Device, cerr)
			}
		case OpSeed:
			if ops.Seed != nil {
				if serr := ops.Seed(s.Path); serr != nil {
					ops.Logf("warning: %v", serr)
				}
			}
		case OpResize:
			from, to, rerr := ops.Resize(s.Device, s.Path)
			if rerr != nil {
				ops.Logf("warning: %v (booting with the state filesystem as it is)", rerr)
			} else if from != to {
				ops.Logf("grew state filesystem from %d to %d blocks", from, to)
			}
		}
		if err != nil && s.Op != OpMount { // Mount.Do already names the mount
			return fmt.Errorf("%s: %w", s, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
