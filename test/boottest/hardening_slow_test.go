//go:build slow

package boottest

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// Behind the slow tag (75 s): the default suite shows rescue by
// TestRescueOnCorruptRoot; this one waits out the rescue timeout and the
// watchdog.

// TestRescueRebootsUnattended breaks the state partition (a flash fault):
// stage 1 cannot mount it and drops to the rescue shell (issue 10, item
// 11), arms qemu's i6300esb watchdog, and with nobody at the console
// reboots after kestrel.rescue_timeout (the default 60 s) instead of
// waiting for ever; -no-reboot turns the reboot into qemu's exit.
func TestRescueRebootsUnattended(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "bad-state.img")
	if err := corruptPartition(img.Disk, disk, layout.PartState); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Start(vm.Config{Disk: disk, Dir: dir, Watchdog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	if _, err := m.Expect(regexp.MustCompile(`hardware watchdog armed`), bootTimeout); err != nil {
		t.Fatalf("no armed watchdog: %v\n%s", err, tail(m.Console(), 40))
	}
	code, err := m.Wait(4 * time.Minute)
	out := m.Console()
	if err != nil || code != 0 {
		t.Fatalf("no reboot out of the rescue shell: qemu exit %d, %v\n%s", code, err, tail(out, 40))
	}
	if !strings.Contains(out, "rebooting after 1m0s without console input") || !strings.Contains(out, "rescue: rebooting") {
		t.Errorf("console:\n%s", tail(out, 30))
	}
}
