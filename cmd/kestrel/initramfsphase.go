package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/init/rescue"
	"github.com/kestrel-os/kestrel/internal/node/provision/phases"
)

// `kestrel initramfs-phase -new-root DIR [-esp DIR]` is the config's
// initramfs phase (phases.Initramfs) run as a program: cmd/kestrel-stage1
// runs it from the assembled new root just before switch_root
// (stage1.ExecHook), so the initramfs need not carry the config code.
func init() {
	register(command{name: "initramfs-phase", usage: "(run by stage 1) the config's initramfs phase on an assembled new root", run: runInitramfsPhase})
}

func runInitramfsPhase(args []string) int {
	fs := flag.NewFlagSet("initramfs-phase", flag.ContinueOnError)
	newRoot := fs.String("new-root", "", "the assembled new root (required)")
	espDir := fs.String("esp", "", "where the ESP is mounted read-only (none when empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *newRoot == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: kestrel initramfs-phase -new-root DIR [-esp DIR]")
		return 2
	}
	if err := phases.Initramfs(stage1.HookEnv{NewRoot: *newRoot, ESP: *espDir, Logf: rescue.Logf}); err != nil {
		fmt.Fprintf(os.Stderr, "kestrel: initramfs phase: %v\n", err)
		return 1
	}
	return 0
}
