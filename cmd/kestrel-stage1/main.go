// Command kestrel-stage1 is /init in the initramfs: stage 1 (package
// stage1) and nothing else, so that the archive the kernel unpacks before
// it starts is small. It runs the config's initramfs phase by executing
// the rootfs's kestrel binary (`kestrel initramfs-phase`, see
// stage1.ExecHook) rather than linking the config code; stage 2, sshd,
// k3s and the network code are out of reach (internal/boundaries_test.go).
//
// It only works as PID 1: on success it execs /sbin/init in the new root;
// on failure it drops to the rescue shell.
package main

import (
	"fmt"
	"os"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/init/rescue"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kestrel-stage1: runs only as /init (PID 1) in Kestrel's initramfs")
		os.Exit(2)
	}
	defer rescue.Guard()
	hooks := stage1.Hooks{Initramfs: stage1.ExecHook(os.Stdout, layout.KestrelBin, initramfsPhaseCommand)}
	err := stage1.Run(stage1.DeviceEnv(hooks))
	rescue.Enter(fmt.Sprintf("stage 1 failed: %v", err), stage1.RescueTimer(err, rescue.Timer(rescue.Logf)))
}

// initramfsPhaseCommand is the kestrel subcommand that runs the config's
// initramfs phase (cmd/kestrel/initramfsphase.go).
const initramfsPhaseCommand = "initramfs-phase"
