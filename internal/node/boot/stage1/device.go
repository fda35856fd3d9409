package stage1

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/randomseed"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
)

// DeviceEnv is the Env of stage 1 running as /init on a device: the real
// /proc, /sys and /dev, CLOCK_BOOTTIME, mount(2) and switch_root, and
// the given hooks (cmd/kestrel, the initramfs's /init).
func DeviceEnv(hooks Hooks) Env {
	return Env{
		Console: os.Stdout, Proc: "/proc", Sys: "/sys", Dev: "/dev", Root: "/",
		NewRoot: layout.NewRoot, EtcStage: "/.etc",
		Clock: boottime.Now, Mount: unix.Mount, WaitTimeout: 10 * time.Second,
		SwitchRoot: SwitchRoot, Entropy: randomseed.Linux{},
		Unmount: unix.Unmount, Hooks: hooks,
	}
}

// RescueTimer is the rescue timer after Run failed with err: for a
// refused slot (its entry demoted, so the reboot lands in the other slot)
// the reboot comes at the timeout whether or not the console is in use,
// as on trial (0 still stays); otherwise it is def.
func RescueTimer(err error, def console.RescueTimer) console.RescueTimer {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return console.RescueTimer{Timeout: refused.RescueTimeout, OnTrial: refused.RescueTimeout > 0}
	}
	return def
}
