package stage1

import (
	"path/filepath"
	"syscall"

	"github.com/kestrel-os/kestrel/pkg/blockdev"
	"github.com/kestrel-os/kestrel/pkg/layout"
	"github.com/kestrel-os/kestrel/pkg/mounts"
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

// runHooks mounts the ESP read-only, runs the hooks and unmounts it.
func runHooks(env Env, devs []blockdev.Device, logf func(string, ...any)) {
	if env.Hooks.Initramfs == nil {
		return
	}
	h := HookEnv{NewRoot: env.NewRoot, Logf: logf}
	if esp, err := blockdev.ByPartName(devs, layout.PartESP); err != nil {
		logf("warning: ESP: %v", err)
	} else if target, err := mountESP(env, esp.Path(filepath.Join(env.NewRoot, "dev"))); err != nil {
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
	if err := env.Hooks.Initramfs(h); err != nil {
		logf("warning: initramfs phase: %v", err)
	}
}

// mountESP mounts the ESP read-only at espStage under the initramfs root.
func mountESP(env Env, dev string) (string, error) {
	target := filepath.Join(env.Root, espStage)
	m := mounts.Mount{Source: dev, Target: target, FSType: "vfat", Mode: 0o700,
		Flags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC,
		Data:  "umask=0077,shortname=mixed"}
	if err := m.Do(env.Mount); err != nil {
		m.Data += ",iocharset=ascii" // the default NLS module may be absent
		if err2 := m.Do(env.Mount); err2 != nil {
			return "", err
		}
	}
	return target, nil
}
