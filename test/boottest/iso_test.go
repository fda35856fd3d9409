package boottest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// isoVersion is the release of the test ISO (its own build directory,
// so that it never races the default image's).
const isoVersion = "0.0.0-iso"

var (
	isoOnce  sync.Once
	isoImage *Image
	isoFile  string
	isoErr   error
)

// buildISO runs `make iso` once per test binary, signed with the tests'
// key, and returns the image build and the ISO's path.
func buildISO(t testing.TB) (*Image, string) {
	t.Helper()
	needTools(t)
	for _, tool := range []string{"xorriso", "sgdisk", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	isoOnce.Do(func() {
		out := filepath.Join(repoRoot(), "out", "test-iso")
		args := makeImageArgs(t, isoVersion, out)
		args[2] = "iso"
		cmd := exec.Command("make", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			isoErr = fmt.Errorf("make iso: %w", err)
			return
		}
		isoImage, isoErr = readManifest(out, isoVersion, "amd64")
		isoFile = filepath.Join(out, fmt.Sprintf("kestrel-%s-amd64.iso", isoVersion))
	})
	if isoErr != nil {
		t.Fatal(isoErr)
	}
	return isoImage, isoFile
}

// TestISOLive boots the ISO live twice, checking on each boot what a user
// of the live system sees: as a CD with a NoCloud disk for config, and as
// a USB stick whose FAT partition carries config.yaml. Both: the default
// menu entry (Live) boots by itself, slot "live", the root is the ISO's
// squashfs through dm-verity, state is a tmpfs, the ISO stays mounted for
// the installer, no disk's ESP is mounted read-write.
func TestISOLive(t *testing.T) {
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
