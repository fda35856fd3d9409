package boottest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/test/vm"
)

// The upgrade tests run on the k3s stand-in image (health gates the trial)
// and upgrade it to a second release built the same way with another
// version and the same signing key, served to the guest over HTTP from the
// host (qemu's user network reaches the host's loopback as 10.0.2.2).

const upgradeVersion = "0.0.2-test"

// upgradeConfig makes the stand-in's health depend on a file on the state
// partition, so the test can make a trial fail without changing releases.
const upgradeConfig = `#cloud-config
kestrel:
  k3s:
    health_timeout: 20s
`

// node is one VM disk booted again and again, as a machine reboots.
type node struct {
	t   testing.TB
	cfg vm.Config
	m   *vm.VM
	g   guest
}

// boot starts the machine on its disk and waits for the ready line.
func (n *node) boot() map[string]string {
	n.t.Helper()
	m, ready := bootVM(n.t, n.cfg)
	n.m, n.g = m, guest{console{n.t, m}}
	return ready
}

// send types a command whose end the shell may not live to report (it
// reboots the node).
func (n *node) send(cmd string) {
	n.t.Helper()
	if err := n.m.Send(cmd + "\n"); err != nil {
		n.t.Fatal(err)
	}
}

// waitReboot waits for the guest to reboot (qemu exits with -no-reboot).
func (n *node) waitReboot(within time.Duration) {
	n.t.Helper()
	if _, err := n.m.Wait(within); err != nil {
		n.t.Fatalf("the node did not reboot: %v\n--- console ---\n%s", err, tail(n.m.Console(), 40))
	}
}

type slotsJSON struct {
	Slot        string              `json:"slot"`
	Version     string              `json:"version"`
	Slots       []bootslot.Slot     `json:"slots"`
	BadReleases []badrelease.Record `json:"bad_releases"`
}

func (n *node) slots() slotsJSON {
	n.t.Helper()
	n.g.run("kestrel status --json > /tmp/status.json")
	var st slotsJSON
	n.g.readJSON("/tmp/status.json", &st)
	return st
}

// slotSummary is "a:good@v* b:trying@v" in the order of layout.Slots,
// * marking the booted slot.
func (s slotsJSON) summary() string {
	var parts []string
	for _, sl := range s.Slots {
		p := sl.Name + ":" + string(sl.State)
		if sl.Version != "" {
			p += "@" + sl.Version
		}
		if sl.Booted {
			p += "*"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// serve serves dir to the guest; it returns the URL prefix as the guest
// sees it.
func serve(t testing.TB, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("http://10.0.2.2:%d", l.Addr().(*net.TCPAddr).Port)
}

// partSumBytes is how much of a root partition partSum hashes: more than
// the test image's squashfs and verity tree (about 23 MiB), everything the
// image wrote there. The whole 1 GiB partition took busybox's sha256sum
// most of cmdTimeout under TCG, and past it on a loaded machine.
const partSumBytes = 64 << 20

// partSum is the sha256 of a guest partition's first partSumBytes, to
// show a slot untouched.
func (n *node) partSum(part string) string {
	n.t.Helper()
	out := n.g.run(fmt.Sprintf("head -c %d /dev/$(basename $(grep -l '^PARTNAME=%s$' /sys/class/block/*/uevent | head -1 | xargs dirname)) | sha256sum", partSumBytes, part))
	f := strings.Fields(out)
	if len(f) == 0 || len(f[0]) != 64 {
		n.t.Fatalf("sha256 of %s: %q", part, out)
	}
	return f[0]
}

var upgradeDoneRE = regexp.MustCompile(`asking PID 1 to reboot`)

// upgradeNode is a node on the stand-in image (v1) with config on its
// ESP, not booted yet, and the v2 release served to it at url.
func upgradeNode(t *testing.T, config string) (*node, testRelease, string) {
	t.Helper()
	img := buildImageWith(t, imageOpts{Name: "test-standin", K3s: "standin"})
	rel := buildRelease(t, imageOpts{Name: "test-release-v2", K3s: "standin"}, upgradeVersion)
	dir := t.TempDir()
	t.Cleanup(func() { keepConsole(t, img, dir) })
	n := &node{t: t, cfg: vm.Config{Disk: withESPConfig(t, img, dir, config), DiskSize: "3G", Dir: dir}}
	return n, rel, serve(t, rel.Dir)
}

// TestUpgrade walks a node through the node-side upgrade on the stand-in
// image: v1 -> v2 from a bundle over HTTP (v2 marked good, v1's slot
// untouched), kestrel rollback back to v1, then v2 again in the Job's form
// (--from DIR --host) while the stand-in is unhealthy: v2 is tried, given
// up by the loader, the node is back on v1 by itself with v2 recorded as
// bad, and another upgrade to v2 is refused.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	n, rel, url := upgradeNode(t, upgradeConfig)

	// v1, fresh.
	if r := n.boot(); r["slot"] != "a" || r["version"] != testVersion {
		t.Fatalf("first boot: %v", r)
	}
	n.g.waitHealth(healthWait)
	if s := n.slots().summary(); s != "a:good@"+testVersion+"* b:empty" {
		t.Fatalf("fresh slots: %s", s)
	}
	rootA := n.partSum(layout.PartRootA)

	// v1 -> v2 from a bundle over HTTP; the command reboots the node.
	n.send(fmt.Sprintf("kestrel upgrade --bundle %s/%s > /var/log/upgrade.log 2>&1", url, filepath.Base(rel.Bundle)))
	n.waitReboot(5 * time.Minute)
	if r := n.boot(); r["slot"] != "b" || r["version"] != upgradeVersion {
		t.Fatalf("boot after the upgrade: %v\n%s", r, tail(n.m.Console(), 40))
	}
	if h := n.g.waitHealth(healthWait); h.State != "good" {
		t.Fatalf("v2's boot: %s", h.String())
	}
	waitFor(t, "slot b marked good", func() bool {
		return n.slots().summary() == "a:good@"+testVersion+" b:good@"+upgradeVersion+"*"
	}, n)
	if got := n.partSum(layout.PartRootA); got != rootA {
		t.Errorf("slot a's root changed during the upgrade: %s -> %s", rootA, got)
	}
	if !strings.Contains(n.g.run("mount | grep ' / '"), "/dev/dm-") {
		t.Errorf("v2's root is not on dm-verity: %s", n.g.run("mount | grep ' / '"))
	}

	// kestrel rollback: v1 boots next.
	n.g.contains("cat /var/log/upgrade.log", "asking PID 1 to reboot")
	n.g.contains("kestrel rollback", "slot a boots next")
	n.send("kestrel reboot")
	n.waitReboot(2 * time.Minute)
	if r := n.boot(); r["slot"] != "a" || r["version"] != testVersion {
		t.Fatalf("boot after kestrel rollback: %v", r)
	}
	n.g.waitHealth(healthWait)

	// v2 again, as the upgrade Job runs it, with the stand-in unhealthy.
	n.g.run("mkdir -p /var/lib/rancher/k3s-standin && echo unhealthy > /var/lib/rancher/k3s-standin/mode")
	n.g.run(fmt.Sprintf("mkdir -p /tmp/rel /run/host && mount --rbind / /run/host && for f in %s; do wget -q -O /tmp/rel/$f %s/dir/$f; done", strings.Join(rel.DirFiles, " "), url))
	n.send("kestrel upgrade --from /tmp/rel --host /run/host > /var/log/upgrade.log 2>&1")
	n.waitReboot(5 * time.Minute)
	// Each trial boot reaches ready, then the unhealthy stand-in ends it.
	var back map[string]string
	for boot := 1; boot <= bootslot.DefaultTries+1; boot++ {
		r := n.boot()
		if r["version"] == testVersion {
			back = r
			break
		}
		if r["slot"] != "b" || r["version"] != upgradeVersion {
			t.Fatalf("trial boot %d: %v", boot, r)
		}
		n.waitReboot(healthWait + time.Minute)
	}
	if back == nil || back["slot"] != "a" {
		t.Fatalf("the node did not fall back to v1 in slot a after %d tries: %v", bootslot.DefaultTries, back)
	}
	st := n.slots()
	if st.summary() != "a:good@"+testVersion+"* b:bad@"+upgradeVersion {
		t.Errorf("slots after the fallback: %s", st.summary())
	}
	if len(st.BadReleases) != 1 || st.BadReleases[0].Version != upgradeVersion {
		t.Errorf("bad releases: %+v", st.BadReleases)
	}
	n.g.contains("kestrel status", "rolled back from:")
	out := n.g.run(fmt.Sprintf("kestrel upgrade --no-reboot --bundle %s/%s 2>&1; echo rc=$?", url, filepath.Base(rel.Bundle)))
	if !strings.Contains(out, "rolled back from release "+upgradeVersion) || !strings.Contains(out, "rc=1") {
		t.Errorf("a second upgrade to the bad release was not refused:\n%s", out)
	}
}

// waitFor polls cond for up to two minutes.
func waitFor(t *testing.T, what string, cond func() bool, n *node) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(3 * time.Second) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within two minutes\n--- console ---\n%s", what, tail(n.m.Console(), 40))
}

// keepConsole copies a failed test's console log next to its image.
func keepConsole(t *testing.T, img *Image, dir string) {
	if !t.Failed() {
		return
	}
	logs := filepath.Join(img.Dir, "logs")
	os.MkdirAll(logs, 0o755)
	if data, err := os.ReadFile(filepath.Join(dir, "console.log")); err == nil {
		name := filepath.Join(logs, strings.ReplaceAll(t.Name(), "/", "_")+".console.log")
		os.WriteFile(name, data, 0o644)
		t.Logf("console: %s", name)
	}
}
