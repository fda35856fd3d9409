//go:build slow

package boottest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/test/vm"
)

// TestUpgradeKexec is an upgrade with kestrel.kexec_reboot, the case the
// option is for: v1 -> v2 from a bundle, and the upgrade's reboot starts
// slot b's new kernel from v1's (qemu would exit on a firmware reboot)
// with b's own command line (its verity root hash), counting b's first
// try as the loader would; v2 comes up on dm-verity, healthy, and is
// marked good, all on the same machine.
func TestUpgradeKexec(t *testing.T) {
	t.Parallel()
	n, rel, url := upgradeNode(t, upgradeConfig+"  kexec_reboot: true\n")

	if r := n.boot(); r["slot"] != "a" || r["version"] != testVersion {
		t.Fatalf("first boot: %v", r)
	}
	n.g.waitHealth(healthWait)

	n.send(fmt.Sprintf("kestrel upgrade --bundle %s/%s > /var/log/upgrade.log 2>&1", url, filepath.Base(rel.Bundle)))
	if _, err := n.m.Expect(regexp.MustCompile(`reboot: into slot b, on trial, without the firmware \(kexec; 2 tries left`), 5*time.Minute); err != nil {
		t.Fatalf("%v\n--- console ---\n%s", err, tail(n.m.Console(), 40))
	}
	line, err := n.m.Expect(readyRE, bootTimeout) // fails if qemu exited: a firmware reboot
	if err != nil {
		t.Fatalf("no ready line after the upgrade's kexec reboot: %v\n--- console ---\n%s", err, tail(n.m.Console(), 60))
	}
	if r := vm.Fields(line[0]); r["slot"] != "b" || r["version"] != upgradeVersion {
		t.Fatalf("boot after the upgrade: %v", r)
	}
	if _, err := n.m.MustRun("dmesg -n 1", cmdTimeout); err != nil {
		t.Fatal(err)
	}
	n.g.contains("cat /proc/cmdline", "kestrel.slot=b")
	n.g.contains("mount | grep ' / '", "/dev/dm-")
	if h := n.g.waitHealth(healthWait); h.State != "good" {
		t.Fatalf("v2's boot: %s", h.String())
	}
	waitFor(t, "slot b marked good", func() bool {
		return n.slots().summary() == "a:good@"+testVersion+" b:good@"+upgradeVersion+"*"
	}, n)
}
