package boottest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// The arch tests build the images of images/<target>.yaml with `make image
// DEF=...` and boot them on the qemu machine of their boot chain: arm64
// virt with AAVMF (systemd-boot), armv7 virt with U-Boot (the A/B boot
// script), and the Raspberry Pi models (arches_slow_test.go).

// archTarget is one image definition and how qemu boots it.
type archTarget struct {
	Name     string  // images/<Name>.yaml
	Arch     vm.Arch // qemu system
	Machine  string  // uname -m in the guest
	Firmware vm.Firmware
	Board    string // a Raspberry Pi model: boots the kernel directly
	DTB      string // its device tree, read from the image's ESP
	// SHA256 is the driver dm-verity hashes with on qemu's CPU for the
	// target: cortex-a72 and cortex-a53 have the SHA-2 instructions; the
	// 32-bit cortex-a15 and cortex-a7 do not, and stage 1 leaves their
	// NEON code alone (see stage1.cpuHashModules).
	SHA256 string
}

var (
	targetARM64 = archTarget{Name: "arm64", Arch: vm.ARM64, Machine: "aarch64", Firmware: vm.UEFI, SHA256: "sha256-ce"}
	targetARMv7 = archTarget{Name: "armv7", Arch: vm.ARM, Machine: "armv7l", Firmware: vm.UBoot, SHA256: "sha256-generic"}
)

var (
	targetsMu sync.Mutex
	targets   = map[string]*variantBuild{}
)

// buildTarget builds a target's image once per test binary with `make
// image DEF=images/<target>.yaml` into out/test-<target>.
func buildTarget(t testing.TB, target archTarget) *Image {
	t.Helper()
	needArchTools(t, target.Arch)
	targetsMu.Lock()
	b := targets[target.Name]
	if b == nil {
		b = &variantBuild{}
		targets[target.Name] = b
	}
	targetsMu.Unlock()
	b.once.Do(func() {
		out := filepath.Join(repoRoot(), "out", "test-"+target.Name)
		args := append(makeImageArgs(t, testVersion, out), "DEF=images/"+target.Name+".yaml", "ARCH="+target.Name)
		cmd := exec.Command("make", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("make image DEF=images/%s.yaml: %w", target.Name, err)
			return
		}
		b.img, b.err = readManifest(out, testVersion, target.Name)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.img
}

// needArchTools skips (or fails under CI) without the arch's qemu and
// firmware.
func needArchTools(t testing.TB, a vm.Arch) {
	t.Helper()
	needTools(t)
	need := map[vm.Arch][]string{
		vm.ARM64: {"qemu-system-aarch64", "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/lib/u-boot/qemu_arm64/u-boot.bin"},
		vm.ARM:   {"qemu-system-arm", "/usr/lib/u-boot/qemu_arm/u-boot.bin"},
	}[a]
	need = append(need, "mkimage")
	var missing []string
	for _, n := range need {
		if strings.HasPrefix(n, "/") {
			if _, err := os.Stat(n); err != nil {
				missing = append(missing, n)
			}
		} else if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing %v: run scripts/deps.sh", missing)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// archUserData is the config the arch boots apply: target name, source.
const archUserData = `#cloud-config
hostname: kestrel-%s
write_files:
  - path: /var/lib/kestrel-test/arch.txt
    content: "from config %s\n"
`

// bootTarget boots a target's image with a NoCloud disk and checks, in
// one boot, what every target must show: the ready line for slot a and
// the image's version, the config applied (hostname, a written file), the
// arch, the root read-only through dm-verity, the ESP mounted read-write
// and `kestrel status` naming the slots as the boot chain has them.
func bootTarget(t *testing.T, target archTarget) (*vm.VM, console, *Image) {
	img := buildTarget(t, target)
	dir := t.TempDir()
	t.Cleanup(func() { keepConsole(t, img, dir) })
	cidata := buildCIDATA(t, t.TempDir(), filesystem.TypeFat32, map[string]string{
		"user-data": fmt.Sprintf(archUserData, target.Name, "nocloud"),
		"meta-data": "instance-id: iid-" + target.Name + "\n",
	})
	start := time.Now()
	m, ready := bootVM(t, vm.Config{Arch: target.Arch, Firmware: target.Firmware, Disk: img.Disk, DiskSize: "3G", Dir: dir, ExtraDrives: []string{cidata}})
	t.Logf("%s: ready after %.1fs wall clock (noisy: shared CPU), guest: kernel %ss, stage1 %ss, stage2 %ss, ready at %ss",
		target.Name, time.Since(start).Seconds(), ready["kernel"], ready["stage1"], ready["stage2"], ready["ready"])
	if ready["slot"] != "a" || ready["version"] != testVersion {
		t.Errorf("ready line %v: want slot a, version %s", ready, testVersion)
	}
	c := console{t, m}
	c.expect("uname -m", target.Machine)
	c.expect("hostname", "kestrel-"+target.Name)
	c.expect("cat /var/lib/kestrel-test/arch.txt", "from config nocloud")
	mounts := parseMounts(c.run("cat /proc/mounts"))
	if root := mounts["/"]; root.fstype != "squashfs" || !root.has("ro") || !strings.HasPrefix(filepath.Base(root.source), "dm-") {
		t.Errorf("/ is %+v, want a read-only squashfs on dm-verity", root)
	}
	if esp := mounts[layout.ESPMount]; esp.fstype != "vfat" || !esp.has("rw") {
		t.Errorf("%s is %+v, want the ESP as read-write vfat", layout.ESPMount, esp)
	}
	if st := mounts[layout.StateMount]; st.fstype != "ext4" {
		t.Errorf("%s is %+v, want ext4", layout.StateMount, st)
	}
	assertHashDrivers(t, m, target.SHA256, "crc32c-generic")
	if got := slotLine(c, "a"); got != testVersion+" good, booted, boots next" {
		t.Errorf("kestrel status: slot a: %q", got)
	}
	if got := slotLine(c, "b"); got != "empty" {
		t.Errorf("kestrel status: slot b: %q", got)
	}
	return m, c, img
}

// slotLine is `kestrel status`'s line for slot, without "slot <slot>:".
func slotLine(c console, slot string) string {
	return c.run(fmt.Sprintf("kestrel status | sed -n 's/^slot %s: *//p'", slot))
}

var ubootSlotRE = regexp.MustCompile(`kestrel: slot a \(a=good b=\)`)

// TestBootARMv7UBoot: the armv7 image through U-Boot and the A/B boot
// script: the script picked slot a from the state file on the ESP, and
// the node reads the same state. (Counting tries and fatwrite are shown by
// TestFallbackARMv7UBoot.)
func TestBootARMv7UBoot(t *testing.T) {
	t.Parallel()
	m, c, _ := bootTarget(t, targetARMv7)
	if !ubootSlotRE.MatchString(m.Console()) {
		t.Errorf("U-Boot's console lacks %q:\n%s", ubootSlotRE, tail(m.Console(), 80))
	}
	// A good slot boots without a write: the file is still the builder's.
	c.expect("cat "+layout.ESPMount+layout.ESPABState, "AB_ORDER=a b\nAB_a=good\nAB_b=")
	c.contains("cat /proc/cmdline", "kestrel.slot=a")
}

// The Raspberry Pi SD images on qemu's Pi models. qemu 7.2's raspi3b
// reads the SD card through U-Boot at ~1 MB/s (45-72 s to the kernel), so
// these boot the image's kernel directly (-kernel, -dtb, the manifest's
// command line) with the SD image as the card: the partitions, the ESP
// with its config.yaml, stage 1 and stage 2 are the image's own; the Pi
// firmware and U-Boot are not run. The models have no PCI: the config
// comes from config.yaml on the FAT partition (where a user puts it after
// flashing), not from a NoCloud disk.
var (
	targetRPi3 = archTarget{Name: "rpi3", Arch: vm.ARM64, Machine: "aarch64", Board: vm.Raspi3B, DTB: "bcm2837-rpi-3-b.dtb", SHA256: "sha256-ce"}
	targetRPi2 = archTarget{Name: "rpi2", Arch: vm.ARM, Machine: "armv7l", Board: vm.Raspi2B, DTB: "bcm2836-rpi-2-b.dtb", SHA256: "sha256-generic"}
)

// raspiConfig is a Pi target's machine: disk (the image, or a copy) as the
// SD card, the image's kernel, initramfs and command line, the board's
// device tree from the disk's ESP written into dir.
func raspiConfig(tb testing.TB, img *Image, target archTarget, disk, dir string) vm.Config {
	tb.Helper()
	dtb := filepath.Join(dir, target.DTB)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dtb, readESPFile(tb, disk, "/"+target.DTB), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmdline, _ := img.Manifest["cmdline"].(string)
	// 4 GiB: a power of two (qemu's SD model), larger than the image so
	// the state partition grows.
	return vm.Config{Arch: target.Arch, Board: target.Board, Disk: disk, DiskSize: "4G", Dir: dir,
		Kernel: img.Kernel, Initrd: img.Initrd, DTB: dtb, Append: cmdline}
}

// readESPFile reads a file from the ESP of a disk image.
func readESPFile(t testing.TB, disk, name string) []byte {
	t.Helper()
	fs, closeDisk := openESP(t, disk)
	defer closeDisk()
	f, err := fs.OpenFile(name, os.O_RDONLY)
	if err != nil {
		t.Fatalf("ESP %s: %v", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("ESP %s: %v", name, err)
	}
	return data
}
