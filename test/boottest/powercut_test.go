package boottest

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/test/vm"
)

// powerCutRounds is how often the kill points are gone through: once in
// the default suite, five times behind the slow tag (50 cuts); powerCutAll
// says whether the default suite's round takes every kill point or only
// those marked for it (4 of 10, one per kind of on-disk state, to keep the
// default suite inside its time budget).
var (
	powerCutRounds = 1
	powerCutAll    = false
)

// killPoints spread over the whole of `kestrel upgrade`: after the release
// is verified (nothing written yet), after the slot's entry is removed,
// during the root image's write, after its read-back, after the kernel
// and initramfs, after the new entry. Each kill comes a random 0-400 ms
// after its line shows on the console.
var killPoints = []struct {
	name, re string
	short    bool // in the default suite's round
}{
	{"release verified", `verified: signature`, false},
	{"entry removed", `step 1/4`, false},
	{"root 10-19%", `root image\s+1\d%`, false},
	{"root 30-39%", `root image\s+3\d%`, false},
	{"root 50-59%", `root image\s+5\d%`, true},
	{"root 70-79%", `root image\s+7\d%`, false},
	{"root 90-99%", `root image\s+9\d%`, false},
	{"root read back", `step 2/4`, true},
	{"kernel and initrd on the ESP", `step 3/4`, true},
	{"entry written", `step 4/4`, true},
}

// TestUpgradePowerCut cuts the power (kills qemu) at each kill point of an
// upgrade between two releases, then boots: every boot must come up on a
// good slot (one on trial is marked good by its own boot), and the next
// upgrade starts from whatever the cut left. A last upgrade runs to the
// end and reboots into the new release.
func TestUpgradePowerCut(t *testing.T) {
	t.Parallel()
	const v1, v2 = "0.0.1-pc", "0.0.2-pc"
	r1 := buildRelease(t, imageOpts{Name: "test-pc-v1"}, v1)
	r2 := buildRelease(t, imageOpts{Name: "test-pc-v2"}, v2)
	img := buildImageWith(t, imageOpts{Name: "test-pc-v1", Version: v1})
	dir := t.TempDir()
	t.Cleanup(func() { keepConsole(t, img, dir) })
	disk := filepath.Join(dir, "disk.img")
	if err := copyDisk(img.Disk, disk); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cfg: vm.Config{Disk: disk, DiskSize: "3G", Dir: dir}}
	bundles := map[string]string{
		v1: serve(t, r1.Dir) + "/" + filepath.Base(r1.Bundle),
		v2: serve(t, r2.Dir) + "/" + filepath.Base(r2.Bundle),
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("kill jitter seed %d", seed)

	// bootGood boots and checks the booted slot is good, waiting for a slot
	// on trial to be marked good by its own boot.
	bootGood := func(what string) string {
		t.Helper()
		r := n.boot()
		waitFor(t, what+": booted slot good", func() bool {
			for _, s := range n.slots().Slots {
				if s.Booted {
					return s.State == bootslot.Good && s.Version == r["version"]
				}
			}
			return false
		}, n)
		if !strings.Contains(n.g.run("mount | grep ' / '"), "/dev/dm-") {
			t.Errorf("%s: root is not on dm-verity", what)
		}
		return r["slot"] + "@" + r["version"]
	}

	var report []string
	running := bootGood("first boot")
	for round := 0; round < powerCutRounds; round++ {
		for _, p := range killPoints {
			if !p.short && !powerCutAll {
				continue
			}
			target := v2
			if strings.HasSuffix(running, "@"+v2) {
				target = v1
			}
			jitter := time.Duration(rng.IntN(400)) * time.Millisecond
			// Through cat: plain progress lines, one per tenth, as in a Job's log.
			if err := n.m.Send(fmt.Sprintf("kestrel upgrade --force --no-reboot --bundle %s 2>&1 | cat\n", bundles[target])); err != nil {
				t.Fatal(err)
			}
			if _, err := n.m.Expect(regexp.MustCompile(p.re), 3*time.Minute); err != nil {
				t.Fatalf("%s: %v\n--- console ---\n%s", p.name, err, tail(n.m.Console(), 30))
			}
			time.Sleep(jitter)
			n.m.Kill()
			n.m.Wait(time.Minute)
			after := bootGood("after the cut at " + p.name)
			report = append(report, fmt.Sprintf("%-30s +%3dms  %s -> %s: boots %s", p.name, jitter.Milliseconds(), running, target, after))
			running = after
		}
	}
	// A repeated upgrade, uncut, succeeds and boots.
	target := v2
	if strings.HasSuffix(running, "@"+v2) {
		target = v1
	}
	n.send(fmt.Sprintf("kestrel upgrade --force --bundle %s > /var/log/upgrade.log 2>&1", bundles[target]))
	n.waitReboot(5 * time.Minute)
	final := bootGood("after the uncut upgrade")
	if !strings.HasSuffix(final, "@"+target) {
		t.Errorf("the uncut upgrade to %s boots %s", target, final)
	}
	t.Logf("power cuts (%d), then an uncut upgrade to %s: boots %s\n%s", len(report), target, final, strings.Join(report, "\n"))
}
