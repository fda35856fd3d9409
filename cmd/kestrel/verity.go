package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/dmverity"
)

func init() {
	register(command{"verity", "status: the verified root's dm-verity status; check: read the whole root and verify every block", verityCmd})
}

// verityCmd reports on the root device stage 1 opened through dm-verity.
// "check" is what stage 2 runs in the background; here it also prints the
// throughput, for the operator and the boot test.
func verityCmd(args []string) int {
	if len(args) != 1 || (args[0] != "status" && args[0] != "check") {
		fmt.Fprintln(os.Stderr, "usage: kestrel verity status|check")
		return 2
	}
	st, err := dmverity.TableStatus(dmverity.Control, dmverity.RootName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kestrel verity: %v (is the root verified? see /proc/cmdline)\n", err)
		return 1
	}
	fmt.Printf("%s: %s %s\n", dmverity.RootName, st.Target, st.Info)
	if args[0] == "status" {
		if st.Corrupt() {
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dev, err := dmverity.NodeByName("/sys", "/dev", dmverity.RootName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kestrel verity check: %v\n", err)
		return 1
	}
	start := time.Now()
	n, err := dmverity.Check(ctx, dev)
	d := time.Since(start)
	fmt.Printf("read %d bytes in %.2fs (%.1f MB/s)\n", n, d.Seconds(), float64(n)/1e6/d.Seconds())
	if err != nil {
		fmt.Fprintf(os.Stderr, "kestrel verity check: %v\n", err)
		return 1
	}
	fmt.Println("every block verified")
	return 0
}
