package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/init/control"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
)

func init() {
	register(command{"poweroff", "stop services, unmount cleanly and power off", powerCmd("poweroff", syscall.SIGUSR2)})
	register(command{"reboot", "stop services, unmount cleanly and reboot (--firmware: through the firmware even with kestrel.kexec_reboot)", powerCmd("reboot", syscall.SIGTERM)})
	register(command{"halt", "stop services, unmount cleanly and halt", powerCmd("halt", syscall.SIGUSR1)})
}

// powerCmd asks PID 1 over the control socket; if the socket is not
// there (a PID 1 still booting) it falls back to the signal busybox's
// init convention uses, which stage 2 also understands.
func powerCmd(op string, sig syscall.Signal) func([]string) int {
	return func(args []string) int {
		op := op
		if op == "reboot" && len(args) == 1 && args[0] == "--firmware" {
			op, args = power.RebootFirmware.String(), nil
		}
		if len(args) > 0 {
			fmt.Fprintf(os.Stderr, "kestrel %s: unexpected arguments %q\n", op, args)
			return 2
		}
		// Without the socket the signal means a plain reboot, which is
		// a firmware one then: PID 1 opens its socket before it reads
		// the config, so it has no kexec_reboot to honour yet.
		err := control.Call(layout.ControlSocket, control.Request{Op: op}, nil)
		if errors.Is(err, control.ErrNoServer) && pid1IsKestrel() {
			err = syscall.Kill(1, sig)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel %s: %v\n", op, err)
			return 1
		}
		return 0
	}
}

// pid1IsKestrel guards the signal fallback: on a machine whose init is
// not this binary, SIGUSR2 or SIGTERM to PID 1 means something else.
func pid1IsKestrel() bool {
	self, err := os.Executable()
	if err != nil {
		return false
	}
	a, err1 := os.Stat(self)
	b, err2 := os.Stat("/proc/1/exe")
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}
