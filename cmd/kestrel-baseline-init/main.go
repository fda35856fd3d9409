// Command kestrel-baseline-init is the /init of the benchmark's baseline
// initramfs: the smallest thing a kernel can run. It prints the guest
// uptime (CLOCK_BOOTTIME) as "BASELINE-READY t=<seconds>" on the console
// and powers the machine off, so that `make bench` can set Kestrel's own
// stage 1 + stage 2 time against the same kernel booting nothing.
//
// It mounts nothing and loads no modules on purpose; it only works as
// PID 1 (the poweroff is a reboot(2) call).
package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func main() {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: clock_gettime: %v\n", err)
	}
	fmt.Printf("BASELINE-READY t=%d.%03d\n", ts.Sec, ts.Nsec/1e6)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: poweroff: %v\n", err)
	}
	// PID 1 must not exit: the kernel would panic instead of powering off.
	select {}
}
