package boottest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// isoVersion is the release of the test ISO (its own build directory,
// so that it never races the default image's).
const isoVersion = "0.0.0-iso"

// buildISO builds the ISO test image once per test binary (`make iso`
// with the k3s stand-in, signed with the tests' key) and returns the
// image build and the ISO's path.
func buildISO(t testing.TB) (*Image, string) {
	t.Helper()
	for _, tool := range []string{"xorriso", "sgdisk", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	img := buildImageWith(t, imageOpts{Name: "test-iso", K3s: "standin", Version: isoVersion, ISO: true})
	return img, filepath.Join(img.Dir, fmt.Sprintf("kestrel-%s-amd64.iso", isoVersion))
}

// TestISOLive boots the ISO live twice, checking on each boot what a user
// of the live system sees: as a CD with a NoCloud disk for config, and as
// a USB stick whose FAT partition carries config.yaml. Both: the default
// menu entry (Live) boots by itself, slot "live", the root is the ISO's
// squashfs through dm-verity, state is a tmpfs, the ISO stays mounted for
// the installer, no disk's ESP is mounted read-write.
func TestISOLive(t *testing.T) {
	t.Parallel()
	_, iso := buildISO(t)

	t.Run("cdrom", func(t *testing.T) {
		dir := t.TempDir()
		cidata := buildCIDATA(t, dir, filesystem.TypeFat32, map[string]string{
			"user-data": "#cloud-config\nhostname: live-cd\n",
			"meta-data": "instance-id: iid-live-cd\n",
		})
		m, ready := bootVM(t, vm.Config{CDROM: iso, Dir: dir, ExtraDrives: []string{cidata}})
		checkLive(t, m, ready, "live-cd")
		if out, _ := m.MustRun("grep -c ' "+layout.ESPMount+" ' /proc/mounts || true", cmdTimeout); strings.TrimSpace(out) != "0" {
			t.Errorf("from a CD nothing should be mounted at %s: %q", layout.ESPMount, out)
		}
	})

	t.Run("usb", func(t *testing.T) {
		dir := t.TempDir()
		stick := filepath.Join(dir, "stick.iso")
		copyFileT(t, iso, stick)
		putOnLiveFAT(t, stick, "config.yaml", "hostname: live-usb\n")
		m, ready := bootVM(t, vm.Config{USB: stick, Dir: dir})
		checkLive(t, m, ready, "live-usb")
		out, err := m.MustRun("grep ' "+layout.ESPMount+" ' /proc/mounts", cmdTimeout)
		if err != nil || !strings.Contains(out, "vfat ro,") {
			t.Errorf("the stick's FAT should be mounted read-only at %s: %q %v", layout.ESPMount, out, err)
		}
	})
}

// checkLive checks a live boot.
func checkLive(t *testing.T, m *vm.VM, ready map[string]string, hostname string) {
	t.Helper()
	run := func(cmd string) string {
		t.Helper()
		out, err := m.MustRun(cmd, cmdTimeout)
		if err != nil {
			t.Fatalf("%v\n--- console ---\n%s", err, tail(m.Console(), 40))
		}
		return strings.TrimSpace(out)
	}
	if ready["slot"] != layout.SlotLive || ready["version"] != isoVersion {
		t.Errorf("ready line: slot %q version %q, want %s %s", ready["slot"], ready["version"], layout.SlotLive, isoVersion)
	}
	t.Logf("live boot: kernel %ss, stage1 %ss, stage2 %ss, ready at %ss", ready["kernel"], ready["stage1"], ready["stage2"], ready["ready"])
	if got := run("hostname"); got != hostname {
		t.Errorf("hostname %q, want %q (config not applied)", got, hostname)
	}
	root := run("grep ' / ' /proc/mounts")
	if !regexp.MustCompile(`^/dev/dm-\d+ / squashfs ro`).MatchString(root) {
		t.Errorf("root should be the ISO's squashfs through dm-verity: %q", root)
	}
	if st := run("grep ' " + layout.StateMount + " ' /proc/mounts"); !strings.HasPrefix(st, "tmpfs "+layout.StateMount+" tmpfs") {
		t.Errorf("state should be a tmpfs: %q", st)
	}
	if got := run("ls " + layout.ISOMount + "/kestrel"); !strings.Contains(got, "rootfs") || !strings.Contains(got, "release.json") {
		t.Errorf("ISO not mounted at %s: %q", layout.ISOMount, got)
	}
	if got := run("cat /proc/cmdline"); !strings.Contains(got, layout.CmdlineLive) {
		t.Errorf("the default entry should be Live: %q", got)
	}
	if got := run("kestrel status"); !strings.Contains(got, layout.SlotLive) {
		t.Errorf("kestrel status should name the live slot:\n%s", got)
	}
}

// putOnLiveFAT copies a file onto the ISO's FAT partition (GPT partition
// 2, as sgdisk reads it) with mtools, as a user would after writing the
// stick.
func putOnLiveFAT(t *testing.T, iso, name, content string) {
	t.Helper()
	out, err := exec.Command("sgdisk", "-i", "2", iso).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2: %v: %s", err, out)
	}
	m := regexp.MustCompile(`First sector: (\d+)`).FindSubmatch(out)
	if m == nil || !strings.Contains(string(out), "'"+layout.PartLiveESP+"'") {
		t.Fatalf("ISO partition 2 is not %s:\n%s", layout.PartLiveESP, out)
	}
	first, _ := strconv.ParseInt(string(m[1]), 10, 64)
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	img := fmt.Sprintf("%s@@%d", iso, first*512)
	if out, err := exec.Command("mcopy", "-o", "-i", img, src, "::/"+name).CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v: %s", err, out)
	}
}

func copyFileT(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}

// installConfig is the installed node's config: a hostname to see it
// applied, a short k3s health timeout so the stand-in's verdict comes
// quickly.
const installConfig = `#cloud-config
hostname: installed
kestrel:
  k3s:
    health_timeout: 20s
`

// blankDisk is a sparse raw file of size bytes: a new machine's disk.
func blankDisk(t *testing.T, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "blank.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

var installedRE = regexp.MustCompile(`kestrel install: done[^\n]*\n`)

// TestISOInstall is the unattended install and what follows: the ISO
// as a CD with a NoCloud disk whose config carries install.device and
// power_off installs onto a blank virtual disk and powers off; the disk
// alone (ISO and NoCloud detached) then boots slot A with the config
// applied (hostname, config.yaml 0600 on state, the stand-in k3s
// started and healthy, state grown to the disk); and the installed disk
// takes an A/B upgrade like the image (v2's bundle over HTTP, slot b
// boots and is marked good).
func TestISOInstall(t *testing.T) {
	t.Parallel()
	_, iso := buildISO(t)
	rel := buildRelease(t, imageOpts{Name: "test-release-v2", K3s: "standin"}, upgradeVersion)
	dir := t.TempDir()
	keepConsoleIn(t, dir)
	disk := blankDisk(t, t.TempDir(), 4<<30)
	cidata := buildCIDATA(t, t.TempDir(), filesystem.TypeFat32, map[string]string{
		"user-data": installConfig + "  install:\n    device: /dev/vda\n    power_off: true\n",
		"meta-data": "instance-id: iid-install\n",
	})

	// 1. Unattended install from the CD.
	m := startVM(t, vm.Config{CDROM: iso, Disk: disk, Dir: dir, ExtraDrives: []string{cidata}})
	if _, err := m.Expect(installedRE, 10*time.Minute); err != nil {
		t.Fatalf("unattended install: %v\n--- console ---\n%s", err, tail(m.Console(), 60))
	}
	if _, err := m.Wait(3 * time.Minute); err != nil {
		t.Fatalf("no power-off after the install: %v\n%s", err, tail(m.Console(), 30))
	}
	con := m.Console()
	for _, want := range []string{"installing Kestrel " + isoVersion + " onto /dev/vda", "root image 100%", "step 2/4: root image written and read back",
		"slot a's boot entry written", "config written to the state partition", "kestrel install: done: poweroff"} {
		if !strings.Contains(con, want) {
			t.Errorf("install console lacks %q", want)
		}
	}
	// Plain lines on the serial console: one per tenth, not one
	// rewritten line.
	if n := strings.Count(con, "\nroot image "); n < 5 {
		t.Errorf("%d progress lines on the serial console, want one per tenth", n)
	}

	// 2. The disk alone.
	n := &node{t: t, cfg: vm.Config{Disk: disk, Dir: dir}}
	if r := n.boot(); r["slot"] != "a" || r["version"] != isoVersion {
		t.Fatalf("installed disk's first boot: %v", r)
	}
	n.g.expect("hostname", "installed")
	n.g.expect("stat -c '%a %U' /state/kestrel/config.yaml", "600 root")
	n.g.expect("cat /proc/cmdline | grep -c kestrel.live || true", "0")
	if h := n.g.waitHealth(healthWait); h.State != "good" {
		t.Fatalf("installed node's boot: %s", h.String())
	}
	var rec standinRecord
	if !n.g.readJSON("/var/lib/rancher/k3s-standin/record.json", &rec) {
		t.Fatalf("the k3s stand-in did not start on the installed disk")
	}
	if s := n.slots().summary(); s != "a:good@"+isoVersion+"* b:empty" {
		t.Errorf("installed slots: %s", s)
	}
	if out := n.g.run("df -m /state | tail -1"); !grownState(out) {
		t.Errorf("state not grown to the rest of the 4 GiB disk (~1.7 GiB): %s", out)
	}

	// 3. An A/B upgrade on the installed disk.
	url := serve(t, rel.Dir)
	n.send(fmt.Sprintf("kestrel upgrade --bundle %s/%s > /var/log/upgrade.log 2>&1", url, filepath.Base(rel.Bundle)))
	n.waitReboot(5 * time.Minute)
	if r := n.boot(); r["slot"] != "b" || r["version"] != upgradeVersion {
		t.Fatalf("boot after the upgrade: %v\n%s", r, tail(n.m.Console(), 40))
	}
	if h := n.g.waitHealth(healthWait); h.State != "good" {
		t.Fatalf("v2's boot on the installed disk: %s", h.String())
	}
	waitFor(t, "slot b marked good", func() bool {
		return n.slots().summary() == "a:good@"+isoVersion+" b:good@"+upgradeVersion+"*"
	}, n)
}

// grownState reads `df -m` 's last line: more than 1.5 GiB in total
// (the image's state partition is 64 MiB; a 4 GiB disk leaves ~1.7 GiB
// after the ESP and two 1 GiB roots).
func grownState(df string) bool {
	f := strings.Fields(df)
	if len(f) < 2 {
		return false
	}
	total, err := strconv.Atoi(f[1])
	return err == nil && total > 1500
}

// keepConsoleIn copies a failed test's console log to out/test-iso/logs.
func keepConsoleIn(t *testing.T, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs := filepath.Join(repoRoot(), "out", "test-iso", "logs")
		os.MkdirAll(logs, 0o755)
		if data, err := os.ReadFile(filepath.Join(dir, "console.log")); err == nil {
			p := filepath.Join(logs, strings.ReplaceAll(t.Name(), "/", "_")+".console.log")
			os.WriteFile(p, data, 0o644)
			t.Logf("console: %s", p)
		}
	})
}
