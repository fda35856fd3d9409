package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/ubootab"
)

// TestUBootESP lays out the U-Boot script chain's ESP from package trees
// made here, compiles the script with the real mkimage and reads its
// header back with mkimage -l.
func TestUBootESP(t *testing.T) {
	if _, err := exec.LookPath("mkimage"); err != nil {
		t.Skip("mkimage not installed (scripts/deps.sh installs u-boot-tools)")
	}
	dir := t.TempDir()
	write := func(p, data string) string {
		p = filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("kernel/usr/lib/linux-image-6.1.0-50-arm64/broadcom/bcm2837-rpi-3-b.dtb", "dtb")
	write("fw/usr/lib/raspi-firmware/start.elf", "elf")
	write("fw/usr/lib/raspi-firmware/bootcode.bin", "bin")
	write("uboot/usr/lib/u-boot/rpi_3/u-boot.bin", "uboot")
	o := Options{Image: imagedef.Image{Arch: "arm64",
		Kernel: imagedef.Kernel{DTBs: []string{"broadcom/bcm2837-rpi-3-*.dtb"}, DTBsAtRoot: true},
		Boot: imagedef.Boot{Chain: imagedef.ChainUBootScript, KernelCommand: "booti", ConfigTxt: "kernel=u-boot.bin\n",
			Firmware: []imagedef.Firmware{
				{Package: "raspi-firmware", Files: map[string]string{"/": "usr/lib/raspi-firmware/*"}},
				{Package: "u-boot-rpi", Files: map[string]string{"/u-boot.bin": "usr/lib/u-boot/rpi_3/u-boot.bin"}},
			}}}}
	in := inputs{release: "6.1.0-50-arm64", kernelRoot: filepath.Join(dir, "kernel"),
		firmwareRoots: map[string]string{"raspi-firmware": filepath.Join(dir, "fw"), "u-boot-rpi": filepath.Join(dir, "uboot")}}
	entry := bls.Entry{Slot: "a", Version: "1.0", Options: []string{"console=ttyAMA0"}}
	files, data, err := o.espContents(in, entry, "/k", "/i", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	for p := range data {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	want := []string{"/bcm2837-rpi-3-b.dtb", layout.ESPBootScript, "/bootcode.bin", "/config.txt", "/dtbs/broadcom/bcm2837-rpi-3-b.dtb",
		"/kestrel/a/entry.env", "/kestrel/a/initrd", "/kestrel/a/vmlinuz", layout.ESPABState, "/start.elf", "/u-boot.bin"}
	if !slices.Equal(paths, want) {
		t.Errorf("ESP paths:\n%v\nwant\n%v", paths, want)
	}
	if got := string(data[layout.ESPABState]); got != "AB_ORDER=a b\nAB_a=good\nAB_b=\n" {
		t.Errorf("state: %q", got)
	}
	if e, err := ubootab.ParseEntry(data[ubootab.EntryPath("a")]); err != nil || e.Cmdline != "console=ttyAMA0 kestrel.slot=a" {
		t.Errorf("entry: %+v %v", e, err)
	}
	scr := filepath.Join(t.TempDir(), "boot.scr")
	os.WriteFile(scr, data[layout.ESPBootScript], 0o644)
	out, err := exec.Command("mkimage", "-l", scr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "AArch64 Linux Script") {
		t.Errorf("mkimage -l boot.scr: %v\n%s", err, out)
	}

	// A firmware file the package does not have is an error naming it.
	o.Image.Boot.Firmware[1].Files["/u-boot.bin"] = "usr/lib/u-boot/rpi_9/u-boot.bin"
	if _, _, err := o.espContents(in, entry, "/k", "/i", t.TempDir()); err == nil || !strings.Contains(err.Error(), "u-boot-rpi") || !strings.Contains(err.Error(), "rpi_9") {
		t.Errorf("missing firmware file: %v", err)
	}
}
