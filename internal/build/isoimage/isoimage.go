// Package isoimage writes Kestrel's live and installer ISO: an ISO 9660
// filesystem with an El Torito EFI boot image that is also a hybrid disk
// image, so the same file boots as a CD and, written with dd to a USB
// stick, as a disk on UEFI machines.
//
// The ISO is made by Debian's xorriso (the tool Debian's and Ubuntu's own
// installer images are made with), not by go-diskfs: go-diskfs writes ISO
// 9660 and El Torito but no hybrid MBR/GPT, and a hand-written hybrid
// layout would be tested against a handful of firmwares where xorriso's
// has been booted on thousands. The EFI boot image is a FAT32 filesystem
// (FAT12/16 by mkfs.vfat and mcopy: see buildFAT) appended as
// partition 2 of a GPT (`-append_partition 2 <ESP type GUID>
// -appended_part_as_gpt`; `-isohybrid-gpt-basdat` alone wrote an MBR and
// no GPT with xorriso 1.5.4), which the El Torito catalog points at too
// (`-e --interval:appended_partition_2:all::`). After xorriso, sgdisk
// (gdisk) names the GPT's partitions (Rename), so that the FAT partition
// is layout.PartLiveESP; xorriso calls them Gap0, Appended2, Gap1.
//
// What is where:
//
//	ISO 9660 (read-only; stage 1 finds it by layout.ISOVolumeID)
//	  /kestrel/rootfs, vmlinuz, initrd, release.json   slot A of the release
//	  /kestrel/esp.img.gz, state.img.gz, install.json   for kestrel install
//	FAT (partition 2, the EFI boot image; writable on a USB stick)
//	  /EFI/BOOT/BOOTX64.EFI, /loader/loader.conf, /loader/entries/{live,install,rescue}.conf
//	  /kestrel/live/vmlinuz, /kestrel/live/initrd
//	  /config.yaml                                       the user's, optional
//
// The boot entries are not named like slot entries (layout.ESPEntryNamePrefix)
// and carry no try counter, so nothing on the ISO takes part in A/B boot
// counting; loader.conf names the Live entry as default with a short
// timeout.
//
// Limits: the EFI boot image is under 32 MiB (El Torito's sector count),
// so the live kernel and initramfs must stay under ~29 MiB together;
// directory times in it are the build host's clock (mcopy sets them);
// UEFI only (no BIOS El Torito image, no isolinux); x86_64 and
// arm64 loaders only; the FAT image holds the kernel and initramfs a second
// time (the CD case has no partition to read them from, and firmware reads
// only the FAT), which costs their size once more.
package isoimage

import (
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/build/diskimage"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// Spec describes one ISO.
type Spec struct {
	Arch    string // GOARCH (the EFI loader's name on the FAT)
	Version string // release version, in the entries' titles
	// LoaderPath is the loader's path on the FAT (imagedef Boot.LoaderPath).
	LoaderPath string
	// Loader, Kernel, Initrd, Rootfs, Release are host files: systemd-boot,
	// the release's parts and its signed manifest.
	Loader, Kernel, Initrd, Rootfs, Release string
	// Install is install.json's contents (the installer's disk layout).
	Install []byte
	// ESPMiB and StateMiB size the installed disk's ESP and state images.
	ESPMiB, StateMiB int64
	// Options are the kernel command line of every entry (console, verity
	// parameters, ...), without kestrel.slot.
	Options []string
	// Time stamps every file (SOURCE_DATE_EPOCH).
	Time int64
	// WorkDir receives the FAT image and the ISO tree while building.
	WorkDir string
}

// Entry names on the FAT (loader/entries/<name>.conf).
const (
	EntryLive    = "live"
	EntryInstall = "install"
	EntryRescue  = "rescue"
)

// Timeout is the boot menu's timeout in seconds before Live boots.
const Timeout = 3

// Build writes the ISO to out (replacing it).
func Build(s Spec, out string) error {
	fatOut := filepath.Join(s.WorkDir, "efiboot.img")
	if err := buildFAT(s, fatOut); err != nil {
		return err
	}
	defer os.Remove(fatOut)
	tree := filepath.Join(s.WorkDir, "iso-tree")
	os.RemoveAll(tree)
	defer os.RemoveAll(tree)
	files := map[string]string{
		layout.ISORootfs: s.Rootfs, layout.ISOKernel: s.Kernel, layout.ISOInitrd: s.Initrd,
		layout.ISORelease: s.Release,
	}
	for dst, src := range files {
		if err := linkOrCopy(src, filepath.Join(tree, dst)); err != nil {
			return fmt.Errorf("ISO tree: %w", err)
		}
	}
	if err := installImages(s, tree); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, layout.ISOInstall), s.Install, 0o644); err != nil {
		return fmt.Errorf("ISO tree: %w", err)
	}
	tmp := out + ".partial"
	os.Remove(tmp)
	defer os.Remove(tmp)
	args := []string{"-as", "mkisofs", "-quiet", "-o", tmp,
		"-V", layout.ISOVolumeID, "-r", // Rock Ridge: long names, modes
		"-append_partition", "2", espType, fatOut, "-appended_part_as_gpt",
		"-e", "--interval:appended_partition_2:all::", "-no-emul-boot",
		tree}
	cmd := exec.Command("xorriso", args...)
	// xorriso takes every timestamp and the volume UUID from it.
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(max(s.Time, 1), 10))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("xorriso %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	if err := Rename(tmp, map[int]string{1: "kestrel-iso", 2: layout.PartLiveESP}); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("ISO %s: %w", out, err)
	}
	return nil
}

// maxFATBytes is the largest EFI boot image a CD boots: the El Torito
// catalog's sector count is 16 bits of 512-byte sectors, and a larger
// image gets a count of 0, which OVMF (and other firmware) reads as "up to
// the end of the ISO 9660 volume", which the appended partition lies
// beyond: "Not Found".
const maxFATBytes = 65535 * 512

// buildFAT writes the EFI boot image: the loader, the menu and the live
// kernel and initramfs, with 2 MiB to spare for a user's config.yaml, as
// a FAT12/16 volume (mkfs.vfat picks; under maxFATBytes a FAT32 volume,
// the disk image's go-diskfs code, does not fit) filled with mtools'
// mcopy. The boot files are staged with their times set to s.Time;
// mkfs.vfat --invariant fixes the rest, so the bytes repeat.
func buildFAT(s Spec, out string) error {
	kernel, initrd := path.Join(layout.ESPSlotDir, layout.SlotLive, layout.ESPKernelName), path.Join(layout.ESPSlotDir, layout.SlotLive, layout.ESPInitrdName)
	stage := filepath.Join(s.WorkDir, "efiboot")
	os.RemoveAll(stage)
	defer os.RemoveAll(stage)
	files := map[string][]byte{
		layout.ESPLoaderConf:    LoaderConf(),
		entryPath(EntryLive):    Entry(s.Version, "live", kernel, initrd, s.Options),
		entryPath(EntryInstall): Entry(s.Version, "install", kernel, initrd, append(slices.Clone(s.Options), InstallKey)),
		// The rescue shell stays until the operator leaves it.
		entryPath(EntryRescue): Entry(s.Version, "rescue shell", kernel, initrd, append(slices.Clone(s.Options), layout.CmdlineRescue, layout.CmdlineRescueTimeout+"=0")),
	}
	var need int64
	for dst, src := range map[string]string{s.LoaderPath: s.Loader, kernel: s.Kernel, initrd: s.Initrd} {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("EFI boot image: %w", err)
		}
		files[dst] = b
	}
	stamp := time.Unix(max(s.Time, 315532800), 0) // FAT's epoch is 1980
	for p, b := range files {
		need += int64(len(b))
		dst := filepath.Join(stage, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(dst, stamp, stamp); err != nil {
			return err
		}
	}
	size := min((need>>20+3)<<20, maxFATBytes/1024*1024)
	if need+1<<20 > size {
		return fmt.Errorf("EFI boot image: the loader, kernel and initramfs (%d MiB) do not fit the %d bytes a CD's El Torito image can be", need>>20, maxFATBytes)
	}
	os.Remove(out)
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(out, size); err != nil {
		return err
	}
	volID := fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte("kestrel-iso-"+s.Version)))
	ents, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	mcopy := []string{"-s", "-m", "-i", out}
	for _, e := range ents {
		mcopy = append(mcopy, filepath.Join(stage, e.Name()))
	}
	for _, c := range [][]string{
		{"mkfs.vfat", "--invariant", "-i", volID, "-n", "KESTREL_ISO", out},
		append(append([]string{"mcopy"}, mcopy...), "::/"),
	} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("EFI boot image: %s: %w\n%s", strings.Join(c, " "), err, b)
		}
	}
	return nil
}

// installImages writes the installed disk's ESP and state filesystem
// images, gzip-compressed, into the ISO tree: the disk image's own code
// makes them (diskimage.BuildFAT, MakeState), so an installed disk's
// filesystems are the image's. Mostly empty, they compress to little.
func installImages(s Spec, tree string) error {
	ds := diskimage.Spec{
		Arch: s.Arch, Seed: "kestrel-" + s.Version + "-installed", ESPMiB: s.ESPMiB, Time: s.Time,
		ESP:       map[string]string{s.LoaderPath: s.Loader},
		ESPData:   map[string][]byte{layout.ESPLoaderConf: bls.LoaderConf()},
		StateDirs: layout.PersistentDirs,
	}
	espRaw := filepath.Join(s.WorkDir, "installed-esp.img")
	if err := diskimage.BuildFAT(ds, espRaw); err != nil {
		return err
	}
	defer os.Remove(espRaw)
	stateRaw, err := diskimage.MakeState(ds, s.StateMiB<<20, s.WorkDir)
	if err != nil {
		return err
	}
	defer os.Remove(stateRaw)
	for src, dst := range map[string]string{espRaw: layout.ISOESPImage, stateRaw: layout.ISOStateImage} {
		if err := gzipFile(src, filepath.Join(tree, dst)); err != nil {
			return fmt.Errorf("ISO tree: %w", err)
		}
	}
	return nil
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestSpeed)
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// InstallKey on the Install entry's command line makes stage 2 run
// `kestrel install` on the console instead of a shell
// (internal/node/install); k3OS's ISO said k3os.mode=install.
const InstallKey = layout.CmdlineMode + "=" + layout.ModeInstall

func entryPath(name string) string { return path.Join(layout.ESPEntriesDir, name+".conf") }

// LoaderConf is the ISO's loader.conf: Live after Timeout seconds, no
// command-line editor.
func LoaderConf() []byte {
	return []byte(fmt.Sprintf("timeout %d\ndefault %s.conf\nconsole-mode keep\neditor no\n", Timeout, EntryLive))
}

// Entry is one boot entry of the ISO: the live kernel with options, plus
// layout.CmdlineLive and kestrel.slot=live.
func Entry(version, what, kernel, initrd string, options []string) []byte {
	opts := append(append([]string(nil), options...), layout.CmdlineLive, layout.CmdlineSlot+"="+layout.SlotLive)
	return []byte(fmt.Sprintf("title Kestrel %s %s\nversion %s\nlinux %s\ninitrd %s\noptions %s\n",
		version, what, version, kernel, initrd, strings.Join(opts, " ")))
}

// espType is the EFI system partition's GPT type.
const espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// Rename sets the GPT partition names of the image file img (index ->
// name) with sgdisk, which rewrites both headers and their checksums and
// leaves the rest alone. go-diskfs v1.9.4 would rewrite the table with
// its own entry count (xorriso's has 248 entries).
func Rename(img string, names map[int]string) error {
	var args []string
	for i := 1; i <= len(names)+8; i++ {
		if n, ok := names[i]; ok {
			args = append(args, "-c", fmt.Sprintf("%d:%s", i, n))
		}
	}
	args = append(args, img)
	if b, err := exec.Command("sgdisk", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("sgdisk %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// linkOrCopy hard-links src to dst (same filesystem, the usual case under
// out/) or copies it.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
