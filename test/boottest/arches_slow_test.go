//go:build slow

package boottest

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// TestFallbackARMv7UBoot: on the U-Boot script chain, a slot on trial
// whose kernel never reaches init is tried twice, a(2) -> a(1) -> a(0),
// and the third boot is slot b's, without anyone touching the machine.
func TestFallbackARMv7UBoot(t *testing.T) {
	t.Parallel()
	testFallback(t, targetARMv7)
}

// TestFallbackARM64UEFI: the same on arm64 with systemd-boot's counter.
func TestFallbackARM64UEFI(t *testing.T) {
	t.Parallel()
	testFallback(t, targetARM64)
}

var panicRE = regexp.MustCompile(`Kernel panic`)

// testFallback boots the target's image, makes slot b a copy of slot a
// (root partition, kernel, initramfs, an entry of its own, good), then
// puts slot a on trial with 2 tries and a command line whose kernel
// panics (rdinit= names no program), the way a broken release would. Each
// trial boot panics and reboots (panic=10; qemu exits with -no-reboot and
// the test starts it again on the same disk); the third boot is slot b's
// and reaches ready, with slot a shown bad.
func testFallback(t *testing.T, target archTarget) {
	img := buildTarget(t, target)
	dir := t.TempDir()
	t.Cleanup(func() { keepConsole(t, img, dir) })
	cfg := vm.Config{Arch: target.Arch, Firmware: target.Firmware, Disk: img.Disk, DiskSize: "3G", Dir: dir}
	m, ready := bootVM(t, cfg)
	if ready["slot"] != "a" {
		t.Fatalf("first boot: %v", ready)
	}
	c := console{t, m}
	rootMiB := int(math.Ceil(float64(artifactSize(t, img, "rootfs")) / (1 << 20)))
	dev := func(part string) string {
		return fmt.Sprintf("/dev/$(basename $(dirname $(grep -l '^PARTNAME=%s$' /sys/class/block/*/uevent)))", part)
	}
	esp := layout.ESPMount
	c.run(fmt.Sprintf("dd if=%s of=%s bs=1M count=%d 2>/dev/null", dev(layout.PartRootA), dev(layout.PartRootB), rootMiB))
	c.run(fmt.Sprintf("mkdir -p %[1]s/kestrel/b && cp %[1]s/kestrel/a/vmlinuz %[1]s/kestrel/a/initrd %[1]s/kestrel/b/", esp))
	switch target.Firmware {
	case vm.UBoot:
		ent := esp + "/kestrel/%s/" + layout.ESPEntryEnvName
		c.run(fmt.Sprintf("sed 's/kestrel.slot=a/kestrel.slot=b/' %s > %s", fmt.Sprintf(ent, "a"), fmt.Sprintf(ent, "b")))
		c.run(fmt.Sprintf("sed -i 's/^kestrel_args=.*/& rdinit=\\/nonexistent/' %s", fmt.Sprintf(ent, "a")))
		c.run(fmt.Sprintf("printf 'AB_ORDER=a b\\nAB_a=2\\nAB_b=good\\n' > %s%s", esp, layout.ESPABState))
	default:
		e := esp + layout.ESPEntriesDir
		c.run(fmt.Sprintf(`sed -e 's/kestrel.slot=a/kestrel.slot=b/' -e 's/(slot a)/(slot b)/' -e 's#/kestrel/a/#/kestrel/b/#' -e 's/^sort-key .*/sort-key kestrel-50001/' %[1]s/kestrel-a.conf > %[1]s/kestrel-b.conf`, e))
		c.run(fmt.Sprintf(`sed 's/^options .*/& rdinit=\/nonexistent/' %[1]s/kestrel-a.conf > %[1]s/kestrel-a+2.conf && rm %[1]s/kestrel-a.conf`, e))
	}
	if got := slotLine(c, "a"); got != testVersion+" trying (2 tries left), booted, boots next" {
		t.Errorf("slot a set up for trial: %q", got)
	}
	if got := slotLine(c, "b"); got != testVersion+" good" {
		t.Errorf("slot b set up as a good copy: %q", got)
	}
	c.run("sync")
	m.Send("kestrel reboot\n")
	if _, err := m.Wait(3 * time.Minute); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	m.Kill()

	log, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for try := 1; try <= 2; try++ {
		trial := cfg
		trial.Log = log
		m, err := vm.Start(trial)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Expect(panicRE, bootTimeout); err != nil {
			m.Kill()
			t.Fatalf("trial boot %d of slot a: %v\n%s", try, err, tail(m.Console(), 40))
		}
		if target.Firmware == vm.UBoot {
			want := fmt.Sprintf("kestrel: slot a (a=%d b=good)", 2-try)
			if !strings.Contains(m.Console(), want) {
				t.Errorf("trial boot %d: U-Boot did not say %q:\n%s", try, want, tail(m.Console(), 60))
			}
		}
		// panic=10: ten seconds of guest time, which a busy host stretches.
		if _, err := m.Wait(3 * time.Minute); err != nil {
			t.Fatalf("trial boot %d: the panic did not reboot: %v\n%s", try, err, tail(m.Console(), 30))
		}
		m.Kill()
	}
	m, ready = bootVM(t, cfg)
	if ready["slot"] != "b" {
		t.Fatalf("after two failed tries of slot a: ready %v, want slot b\n%s", ready, tail(m.Console(), 60))
	}
	c = console{t, m}
	if got := slotLine(c, "a"); got != testVersion+" bad (no tries left)" {
		t.Errorf("after the fallback, slot a: %q", got)
	}
	if got := slotLine(c, "b"); got != testVersion+" good, booted, boots next" {
		t.Errorf("after the fallback, slot b: %q", got)
	}
	if target.Firmware == vm.UBoot {
		if !strings.Contains(m.Console(), "kestrel: slot b (a=0 b=good)") {
			t.Errorf("U-Boot did not boot b with a exhausted:\n%s", tail(m.Console(), 80))
		}
	} else {
		c.expect("ls -1 "+esp+layout.ESPEntriesDir, "kestrel-a+0-2.conf\nkestrel-b.conf")
	}
}

// artifactSize is the size of the image's artifact of kind in the
// builder's manifest.
func artifactSize(t *testing.T, img *Image, kind string) int64 {
	t.Helper()
	arts, _ := img.Manifest["artifacts"].([]any)
	for _, a := range arts {
		m, _ := a.(map[string]any)
		if m["kind"] == kind {
			if n, ok := m["size"].(float64); ok {
				return int64(n)
			}
		}
	}
	t.Fatalf("manifest of %s has no %s artifact", filepath.Base(img.Disk), kind)
	return 0
}

// TestBootRaspi3B: the rpi3 SD image on raspi3b.
func TestBootRaspi3B(t *testing.T) {
	t.Parallel()
	testBootRaspi(t, targetRPi3)
}

// TestBootRaspi2B: the rpi2 SD image on raspi2b.
func TestBootRaspi2B(t *testing.T) {
	t.Parallel()
	testBootRaspi(t, targetRPi2)
}

func testBootRaspi(t *testing.T, target archTarget) {
	img := buildTarget(t, target)
	dir := t.TempDir()
	t.Cleanup(func() { keepConsole(t, img, dir) })
	for _, p := range []string{img.Disk, img.Disk + ".xz"} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("SD image %s: %v", p, err)
		}
	}
	disk := withESPConfig(t, img, dir, fmt.Sprintf(archUserData, target.Name, "esp"))
	start := time.Now()
	m, ready := bootVM(t, raspiConfig(t, img, target, disk, dir))
	board := target.Board
	t.Logf("%s on %s: ready after %.1fs wall clock (noisy: shared CPU), guest: kernel %ss, stage1 %ss, stage2 %ss, ready at %ss",
		target.Name, board, time.Since(start).Seconds(), ready["kernel"], ready["stage1"], ready["stage2"], ready["ready"])
	if ready["slot"] != "a" || ready["version"] != testVersion {
		t.Errorf("ready line %v", ready)
	}
	c := console{t, m}
	c.expect("uname -m", target.Machine)
	c.expect("hostname", "kestrel-"+target.Name)
	c.expect("cat /var/lib/kestrel-test/arch.txt", "from config esp")
	assertHashDrivers(t, m, target.SHA256, "crc32c-generic")
	// The state partition grew to the end of the 4 GiB card (up to the
	// backup GPT and 1 MiB alignment).
	state := "/sys/class/block/$(basename $(dirname $(grep -l '^PARTNAME=state$' /sys/class/block/*/uevent)))"
	if end := atoi(t, c.run("echo $(( $(cat "+state+"/start) + $(cat "+state+"/size) ))")); end < 4<<21-4096 {
		t.Errorf("state partition ends at sector %d, want it grown to the 4 GiB card's end (%d)", end, 4<<21)
	}
	// What the Pi's boot ROM and U-Boot need on the FAT partition.
	c.expect("cd "+layout.ESPMount+" && ls -1 bootcode.bin start.elf u-boot.bin config.txt boot.scr",
		"boot.scr\nbootcode.bin\nconfig.txt\nstart.elf\nu-boot.bin")
	if got := slotLine(c, "a"); got != testVersion+" good, booted, boots next" {
		t.Errorf("kestrel status: slot a: %q", got)
	}
	// Power-off ends qemu only through the Pi's watchdog (no PSCI).
	m.Send("kestrel poweroff\n")
	if _, err := m.Wait(2 * time.Minute); err != nil {
		t.Errorf("poweroff: %v", err)
	}
}

// TestUpgradeARMv7UBoot and TestUpgradeARM64UEFI: `kestrel upgrade` on
// each boot chain with the k3s stand-in built for the target: an upgrade
// to a release that never becomes healthy is tried until the chain's tries
// run out and the node is back on the old slot by itself, the release
// recorded as bad; then the same release, forced, with the stand-in
// healthy, is marked good.
func TestUpgradeARMv7UBoot(t *testing.T) {
	t.Parallel()
	testArchUpgrade(t, targetARMv7)
}
func TestUpgradeARM64UEFI(t *testing.T) {
	t.Parallel()
	testArchUpgrade(t, targetARM64)
}

func testArchUpgrade(t *testing.T, target archTarget) {
	needArchTools(t, target.Arch)
	img := buildImageWith(t, imageOpts{Name: "test-standin-" + target.Name, K3s: "standin", Target: target.Name})
	rel := buildRelease(t, imageOpts{Name: "test-release-v2-" + target.Name, K3s: "standin", Target: target.Name}, upgradeVersion)
	dir := t.TempDir()
	t.Cleanup(func() { keepConsole(t, img, dir) })
	n := &node{t: t, cfg: vm.Config{Arch: target.Arch, Firmware: target.Firmware, Disk: withESPConfig(t, img, dir, upgradeConfig), DiskSize: "3G", Dir: dir}}
	url := serve(t, rel.Dir)

	if r := n.boot(); r["slot"] != "a" || r["version"] != testVersion {
		t.Fatalf("first boot: %v", r)
	}
	n.g.waitHealth(healthWait)
	if s := n.slots().summary(); s != "a:good@"+testVersion+"* b:empty" {
		t.Fatalf("fresh slots: %s", s)
	}

	// v2 while the stand-in is unhealthy: tried, given up, back to v1.
	n.g.run("mkdir -p /var/lib/rancher/k3s-standin && echo unhealthy > /var/lib/rancher/k3s-standin/mode")
	n.send(fmt.Sprintf("kestrel upgrade --bundle %s/%s > /var/log/upgrade.log 2>&1", url, filepath.Base(rel.Bundle)))
	n.waitReboot(8 * time.Minute)
	var back map[string]string
	for boot := 1; boot <= 4; boot++ {
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
		t.Fatalf("the node did not fall back to v1 in slot a: %v", back)
	}
	st := n.slots()
	if st.summary() != "a:good@"+testVersion+"* b:bad@"+upgradeVersion {
		t.Errorf("slots after the fallback: %s", st.summary())
	}
	if len(st.BadReleases) != 1 || st.BadReleases[0].Version != upgradeVersion {
		t.Errorf("bad releases: %+v", st.BadReleases)
	}

	// The same release, forced, with the stand-in healthy: marked good.
	n.g.waitHealth(healthWait)
	n.g.run("rm -f /var/lib/rancher/k3s-standin/mode")
	n.send(fmt.Sprintf("kestrel upgrade --force --bundle %s/%s > /var/log/upgrade.log 2>&1", url, filepath.Base(rel.Bundle)))
	n.waitReboot(8 * time.Minute)
	if r := n.boot(); r["slot"] != "b" || r["version"] != upgradeVersion {
		t.Fatalf("boot after the forced upgrade: %v", r)
	}
	if h := n.g.waitHealth(healthWait); h.State != "good" {
		t.Fatalf("v2's boot: %s", h.String())
	}
	waitFor(t, "slot b marked good", func() bool {
		return n.slots().summary() == "a:good@"+testVersion+" b:good@"+upgradeVersion+"*"
	}, n)
}

// TestBootARM64UEFI: the arm64 image through AAVMF and systemd-boot with
// boot counting, as on x86_64.
func TestBootARM64UEFI(t *testing.T) {
	t.Parallel()
	_, c, _ := bootTarget(t, targetARM64)
	c.expect("ls "+layout.ESPMount+layout.ESPEntriesDir, "kestrel-a.conf")
	c.contains("cat /proc/cmdline", "console=ttyAMA0")
}

// TestKexecRebootFallbackARM64UEFI: kestrel.kexec_reboot on arm64, whose
// Debian kernel has no kexec_file_load (CONFIG_KEXEC_FILE is off there):
// the load fails with ENOSYS, the reboot goes through the firmware
// (qemu runs with -no-reboot, so it exits). TestKexecReboot shows a kexec
// reboot on x86_64.
func TestKexecRebootFallbackARM64UEFI(t *testing.T) {
	t.Parallel()
	img := buildTarget(t, targetARM64)
	dir := t.TempDir()
	disk := diskWithOptions(t, img.Disk, filepath.Join(dir, "kexec.img"), "kestrel.kexec_reboot")
	m, _ := bootVM(t, vm.Config{Arch: targetARM64.Arch, Firmware: targetARM64.Firmware, Disk: disk, DiskSize: "3G", Dir: dir})
	if err := m.Send("kestrel reboot\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expect(regexp.MustCompile(`reboot: through the firmware: kexec: load slot a's kernel \S+: function not implemented`), cmdTimeout); err != nil {
		t.Fatalf("%v\n--- console ---\n%s", err, tail(m.Console(), 40))
	}
	if _, err := m.Wait(3 * time.Minute); err != nil {
		t.Fatalf("reboot through the firmware: qemu did not exit: %v\n--- console ---\n%s", err, tail(m.Console(), 30))
	}
}
