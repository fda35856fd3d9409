package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/init/control"
	"github.com/kestrel-os/kestrel/internal/node/update"
	"github.com/kestrel-os/kestrel/internal/release"
)

func init() {
	register(command{"upgrade", "write a signed release to the other slot and reboot into it (--from DIR | --bundle FILE|URL|-)", upgradeCmd})
	register(command{"rollback", "boot the other slot next, when it holds a good release", rollbackCmd})
}

// stagingDir is where a streamed bundle's parts wait, verified, until they
// are written: on the state partition, never in RAM.
const stagingDir = "/var/lib/kestrel/upgrade-staging"

func upgradeCmd(args []string) int {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	from := fs.String("from", "", "release directory (the upgrade image's /kestrel/release)")
	bundle := fs.String("bundle", "", "release bundle: a file, - for standard input, or an http(s) URL")
	host := fs.String("host", "/", "where the node's root is mounted (the upgrade Job gives /host)")
	force := fs.Bool("force", false, "write a downgrade, the running version, another board or a release this node rolled back from")
	noReboot := fs.Bool("no-reboot", false, "do not reboot into the new slot")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*from == "") == (*bundle == "") || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "kestrel upgrade: give exactly one of --from DIR or --bundle FILE|URL|-")
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "kestrel upgrade: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	n, err := nodeOf(*host)
	if err != nil {
		return fail(err)
	}
	// Trust comes from the running system's keys, never from the release.
	keys, err := release.LoadKeys(filepath.Join(*host, layout.ReleaseKeysDir))
	if err != nil {
		return fail(err)
	}
	var rel *release.Release
	if *from != "" {
		rel, err = release.OpenDir(*from, keys)
	} else {
		// Whatever an earlier, interrupted run staged is stale.
		stage := filepath.Join(*host, stagingDir)
		os.RemoveAll(stage)
		if err = os.MkdirAll(stage, 0o700); err == nil {
			rel, err = release.OpenBundle(ctx, *bundle, keys, stage)
		}
	}
	if err != nil {
		return fail(err)
	}
	defer rel.Close()
	m := rel.Manifest()
	fmt.Printf("release %s (%s) verified: signature and %d parts\n", m.Version, m.Arch, len(m.Parts))
	res, err := update.Apply(ctx, n, rel, update.Options{Force: *force, Out: os.Stdout, Terminal: isTerminal(os.Stdout)})
	if *from != "" && errors.Is(err, update.ErrRunning) {
		// The Job form, run again after the node rebooted into this
		// release: the reboot ended the first pod before its kubelet
		// reported it, so the Job retries. Nothing is left to do, and
		// failing would fail the rollout of a node that upgraded.
		fmt.Printf("release %s is already running: nothing to do\n", m.Version)
		return 0
	}
	if err != nil {
		return fail(err)
	}
	fmt.Printf("slot %s now holds %s (root image %.1f MB/s); it boots next, for %d tries\n",
		res.Slot, res.Version, float64(res.Bytes)/1e6/res.Write.Seconds(), bootslot.DefaultTries)
	if *noReboot {
		fmt.Println("not rebooting (--no-reboot): the new slot is tried at the next boot")
		return 0
	}
	fmt.Println("asking PID 1 to reboot")
	if err := control.Call(filepath.Join(*host, layout.ControlSocket), control.Request{Op: "reboot"}, nil); err != nil {
		return fail(fmt.Errorf("written, but the reboot request failed: %w", err))
	}
	return 0
}

func rollbackCmd(args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(os.Stderr, "kestrel rollback: takes no arguments")
		return 2
	}
	n, err := nodeOf("/")
	if err == nil {
		var other string
		if other, err = update.Other(n.Slot); err == nil {
			err = n.Chain.Prefer(other)
			if err == nil {
				fmt.Printf("slot %s boots next; run kestrel reboot to boot it now\n", other)
				return 0
			}
		}
	}
	fmt.Fprintf(os.Stderr, "kestrel rollback: %v\n", err)
	return 1
}

// nodeOf describes the node whose root is at host.
func nodeOf(host string) (update.Node, error) {
	cmd, err := kcmdline.Read("/proc/cmdline") // the kernel's, also inside a container
	if err != nil {
		return update.Node{}, err
	}
	slot, ok := cmd.Get(layout.CmdlineSlot)
	if !ok {
		return update.Node{}, fmt.Errorf("the kernel command line has no %s: not a Kestrel node, or booted without its loader", layout.CmdlineSlot)
	}
	osr, err := readOSRelease(filepath.Join(host, layout.OSRelease))
	if err != nil {
		return update.Node{}, err
	}
	return update.Node{
		Host: host, Sys: "/sys", Slot: slot, Version: osr["VERSION_ID"], Arch: runtime.GOARCH, Board: osr["KESTREL_BOARD"],
		Chain: bootslot.Open(filepath.Join(host, layout.ESPMount), slot),
	}, nil
}

// readOSRelease reads os-release's KEY=value lines (quotes removed).
func readOSRelease(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	if out["VERSION_ID"] == "" {
		return nil, errors.New(path + ": no VERSION_ID")
	}
	return out, sc.Err()
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
