package stage1

import (
	"path/filepath"

	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
)

// Hooks let other packages (the config's initramfs phase) take part in
// stage 1 without stage 1 importing them; cmd/kestrel wires them.
type Hooks struct {
	// Initramfs runs once the new root is assembled (root, state, /etc,
	// /run; /proc, /sys and /dev already moved into it), just before
	// switch_root. Its error is reported on the console; boot goes on.
	Initramfs func(h HookEnv) error
}

// HookEnv is what an initramfs hook sees.
type HookEnv struct {
	NewRoot string // the assembled root; /proc, /sys, /dev are under it
	// ESP is where the ESP is mounted read-only for the hook's duration
	// ("" when there is no ESP or it could not be mounted).
	ESP  string
	Logf func(format string, args ...any)
}

// espStage is where the ESP is mounted in the initramfs while the hooks
// run: not under the new root, whose /boot/efi stage 2 mounts itself.
const espStage = "/.esp"

// runHooks mounts the ESP read-only, runs the hooks and unmounts it. It
// does not run them when PhaseIdle finds they would have nothing to do
// (bootDisk is the kernel name of the disk holding the slots); debugf
// says so.
func runHooks(env Env, devs []blockdev.Device, bootDisk string, logf, debugf func(string, ...any)) {
	if env.Hooks.Initramfs == nil {
		return
	}
	h := HookEnv{NewRoot: env.NewRoot, Logf: logf}
	target := filepath.Join(env.Root, espStage)
	// /sys and /dev have moved into the new root by now.
	o := esp.Options{Sys: filepath.Join(env.NewRoot, "sys"), Dev: filepath.Join(env.NewRoot, "dev"), Target: target, ReadOnly: true}
	if err := esp.Mount(devs, o, env.Mount); err != nil {
		logf("warning: ESP: %v", err)
	} else {
		h.ESP = target
		defer func() {
			if env.Unmount == nil {
				return
			}
			if err := env.Unmount(target, 0); err != nil {
				logf("warning: unmount ESP: %v", err)
			}
		}()
	}
	why := ""
	if now, err := blockdev.List(filepath.Join(env.NewRoot, "sys")); err != nil {
		why = err.Error()
	} else {
		var idle bool
		if idle, why = PhaseIdle(PhaseInput{NewRoot: env.NewRoot, ESP: h.ESP, BootDisk: bootDisk, Devices: now}); idle {
			debugf("initramfs phase not run: %s", why)
			return
		}
	}
	debugf("initramfs phase runs: %s", why)
	if err := env.Hooks.Initramfs(h); err != nil {
		logf("warning: initramfs phase: %v", err)
	}
}
