package isoimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/disklayout"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// TestBuild builds an ISO from small stand-in parts and reads it back
// with the tools a user's machine would trust: xorriso's El Torito report
// (a UEFI no-emulation image whose load size covers the FAT), sgdisk (a
// valid GPT, partition 2 an ESP named kestrel-live), fsck.fat on that
// partition, mtools for the menu, and xorriso's listing of the ISO 9660
// tree the installer reads.
func TestBuild(t *testing.T) {
	for _, tool := range []string{"xorriso", "sgdisk", "mkfs.vfat", "mcopy", "fsck.fat", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	dir := t.TempDir()
	part := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat(name, size/len(name)+1)[:size]), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dl, _ := disklayout.Layout{ESPMiB: 100, RootMiB: 64, StateMiB: 16, Options: []string{"console=ttyS0"}}.Marshal()
	s := Spec{
		Arch: "amd64", Version: "1.2.3", LoaderPath: layout.ESPBootloaderX64,
		Loader: part("loader", 100<<10), Kernel: part("kernel", 3<<20), Initrd: part("initrd", 2<<20),
		Rootfs: part("rootfs", 5<<20), Release: part("release.json", 300), Install: dl,
		ESPMiB: 100, StateMiB: 16, Options: []string{"console=ttyS0", "kestrel.verity.roothash=ab"},
		Time: 1700000000, WorkDir: t.TempDir(),
	}
	out := filepath.Join(dir, "k.iso")
	if err := Build(s, out); err != nil {
		t.Fatal(err)
	}

	rep, err := exec.Command("xorriso", "-indev", out, "-report_el_torito", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso: %v\n%s", err, rep)
	}
	boot := regexp.MustCompile(`El Torito boot img :\s+1\s+UEFI\s+y\s+none\s+\S+\s+\S+\s+(\d+)\s+(\d+)`).FindSubmatch(rep)
	if boot == nil || !strings.Contains(string(rep), "Volume id    : '"+layout.ISOVolumeID+"'") {
		t.Fatalf("El Torito report:\n%s", rep)
	}
	ldsiz, _ := strconv.Atoi(string(boot[1]))

	gpt, err := exec.Command("sgdisk", "-v", "-i", "2", out).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, gpt)
	}
	for _, want := range []string{"No problems found", "EFI system partition", "Partition name: '" + layout.PartLiveESP + "'"} {
		if !strings.Contains(string(gpt), want) {
			t.Errorf("sgdisk lacks %q:\n%s", want, gpt)
		}
	}
	m := regexp.MustCompile(`First sector: (\d+).*\nLast sector: (\d+)`).FindSubmatch(gpt)
	first, _ := strconv.ParseInt(string(m[1]), 10, 64)
	last, _ := strconv.ParseInt(string(m[2]), 10, 64)
	if sectors := last - first + 1; int64(ldsiz) != sectors {
		t.Errorf("El Torito load size %d sectors, the FAT partition %d: a CD would not see the whole image", ldsiz, sectors)
	}
	if ldsiz > 65535 {
		t.Errorf("El Torito load size %d does not fit 16 bits", ldsiz)
	}

	fat := filepath.Join(dir, "fat.img")
	dd := exec.Command("dd", "if="+out, "of="+fat, "bs=512", "skip="+string(m[1]), "count="+strconv.FormatInt(last-first+1, 10), "status=none")
	if o, err := dd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, o)
	}
	if o, err := exec.Command("fsck.fat", "-n", fat).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat: %v\n%s", err, o)
	}
	mtype := func(p string) string {
		c := exec.Command("mtype", "-i", fat, "::"+p)
		c.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		o, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("mtype %s: %v\n%s", p, err, o)
		}
		return string(o)
	}
	if got := mtype(layout.ESPLoaderConf); !strings.Contains(got, "default live.conf") || !strings.Contains(got, "timeout 3") {
		t.Errorf("loader.conf:\n%s", got)
	}
	for entry, want := range map[string]string{"live": "", "install": " kestrel.mode=install", "rescue": " kestrel.rescue kestrel.rescue_timeout=0"} {
		got := mtype("/loader/entries/" + entry + ".conf")
		if !strings.Contains(got, "options console=ttyS0 kestrel.verity.roothash=ab"+want+" kestrel.live kestrel.slot=live\n") {
			t.Errorf("%s entry:\n%s", entry, got)
		}
		if strings.Contains(got, "+") {
			t.Errorf("%s entry counts boots:\n%s", entry, got)
		}
	}

	ls, err := exec.Command("xorriso", "-indev", out, "-find", "/kestrel", "-type", "f").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -find: %v\n%s", err, ls)
	}
	for _, p := range []string{layout.ISORootfs, layout.ISOKernel, layout.ISOInitrd, layout.ISORelease, layout.ISOInstall, layout.ISOESPImage, layout.ISOStateImage} {
		if !strings.Contains(string(ls), "'"+p+"'") {
			t.Errorf("ISO 9660 tree lacks %s:\n%s", p, ls)
		}
	}
}

// TestFATTooLarge refuses a kernel and initramfs that a CD's El Torito
// image cannot hold, naming the limit.
func TestFATTooLarge(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	os.WriteFile(big, nil, 0o644)
	os.Truncate(big, 40<<20)
	s := Spec{Version: "1", LoaderPath: layout.ESPBootloaderX64, Loader: big, Kernel: big, Initrd: big, WorkDir: dir}
	err := buildFAT(s, filepath.Join(dir, "fat"))
	if err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Fatalf("got %v", err)
	}
}
