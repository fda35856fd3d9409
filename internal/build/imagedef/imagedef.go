// Package imagedef reads the declarative image definitions (images/*.yaml)
// and the pinned versions file (versions.yaml) that drive kestrel-build.
//
// Image definitions are decoded strictly: an unknown or misspelt key is an
// error naming the file and line. The versions file is shared with other
// builder parts (k3s, ...): only the sections this package reads are
// decoded, and they strictly; other top-level sections are left to their
// owners.
//
// Limits: one definition describes one arch/board. Two boot chains:
// "systemd-boot" (UEFI, BLS entries with boot counting) and "uboot-script"
// (a U-Boot boot script keeping A/B state in a file on the ESP,
// internal/ubootab).
package imagedef

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kestrel-os/kestrel/internal/build/diskimage"
)

// Image is one target's definition.
type Image struct {
	// Name is the target name, part of artifact file names
	// (kestrel-<version>-<name>.img).
	Name string `yaml:"name"`
	// Arch is the Go GOARCH of the target: amd64, arm64 or arm.
	Arch string `yaml:"arch"`
	// GOARM is the ARM version for Arch "arm" (e.g. "7").
	GOARM string `yaml:"goarm,omitempty"`
	// DebianArch is the Debian architecture of the packages: amd64,
	// arm64, armhf.
	DebianArch string     `yaml:"debian_arch"`
	Kernel     Kernel     `yaml:"kernel"`
	Boot       Boot       `yaml:"boot"`
	Initramfs  Initramfs  `yaml:"initramfs"`
	Rootfs     Rootfs     `yaml:"rootfs"`
	Partitions Partitions `yaml:"partitions"`
	Board      Board      `yaml:"board,omitempty"`
}

// Kernel selects the Debian kernel flavour; the ABI and the exact package
// version come from versions.yaml so that all arches move together.
type Kernel struct {
	// Flavour is the Debian kernel flavour: amd64, arm64, armmp.
	Flavour string `yaml:"flavour"`
	// DTBs are device trees (globs relative to the kernel package's
	// /usr/lib/linux-image-<release>/, e.g. "broadcom/bcm2837-rpi-3-b.dtb")
	// copied to /dtbs/ on the ESP for the U-Boot script chain (U-Boot
	// loads /dtbs/${fdtfile}); with DTBsAtRoot also to the ESP's root,
	// where the Raspberry Pi firmware looks for its own.
	DTBs       []string `yaml:"dtbs,omitempty"`
	DTBsAtRoot bool     `yaml:"dtbs_at_root,omitempty"`
}

// Boot chains (Boot.Chain).
const (
	ChainSystemdBoot = "systemd-boot"
	ChainUBootScript = "uboot-script"
)

// Boot describes the boot chain and the kernel command line.
type Boot struct {
	// Chain is the boot chain: "systemd-boot" (UEFI, BLS type-1 entries)
	// or "uboot-script" (boot.scr and an A/B state file, internal/ubootab).
	Chain string `yaml:"chain"`
	// Loader is the systemd-boot binary's file name inside the
	// systemd-boot-efi package, e.g. systemd-bootx64.efi (systemd-boot
	// only).
	Loader string `yaml:"loader,omitempty"`
	// LoaderPath is where the loader goes on the ESP, e.g.
	// /EFI/BOOT/BOOTX64.EFI (the removable-media path firmware boots
	// without NVRAM entries).
	LoaderPath string `yaml:"loader_path,omitempty"`
	// KernelCommand is U-Boot's command for the kernel (uboot-script
	// only): booti for an arm64 Image, bootz for an arm zImage.
	KernelCommand string `yaml:"kernel_command,omitempty"`
	// Firmware are files of Debian packages put on the ESP (uboot-script
	// only): U-Boot itself and the Raspberry Pi firmware for SD images;
	// none for boards whose U-Boot lives in flash.
	Firmware []Firmware `yaml:"firmware,omitempty"`
	// ConfigTxt is written as /config.txt on the ESP (the Raspberry Pi
	// firmware's configuration); empty writes none.
	ConfigTxt string `yaml:"config_txt,omitempty"`
	// Console is the serial console, e.g. "ttyS0,115200".
	Console string `yaml:"console"`
	// Quiet adds "quiet" to the command line.
	Quiet bool `yaml:"quiet"`
	// Cmdline holds extra kernel command-line words.
	Cmdline []string `yaml:"cmdline"`
}

// Firmware is one Debian package's files copied onto the ESP. The package
// version is pinned in versions.yaml (debian.firmware.<package>).
type Firmware struct {
	// Package is the Debian package, e.g. u-boot-rpi.
	Package string `yaml:"package"`
	// Arch is its Debian architecture when it differs from the image's
	// (raspi-firmware is "arm64" on both Pi arches; "all" for
	// architecture-independent packages).
	Arch string `yaml:"arch,omitempty"`
	// Files maps a path on the ESP to a path in the package, e.g.
	// /u-boot.bin: usr/lib/u-boot/rpi_arm64/u-boot.bin. A path in the
	// package ending in "/*" copies that directory's files (not its
	// subdirectories) into the ESP directory named.
	Files map[string]string `yaml:"files"`
}

// Board is the image's board-specific disk layout.
type Board struct {
	// SDImage writes a disk for SD cards: a hybrid MBR naming the ESP as
	// a FAT32 partition next to the GPT (the Raspberry Pi's boot ROM reads
	// only MBR), the image size rounded up to a power of two (qemu's SD
	// model requires it), and an .img.xz next to the .img.
	SDImage bool `yaml:"sd_image,omitempty"`
}

// Initramfs describes the stage-1 initramfs.
type Initramfs struct {
	// Compression is "lz4" (default), "zstd", "gzip" or "none".
	Compression string `yaml:"compression"`
	// Modules are loaded by stage 1, in this order (dependencies first,
	// added by the builder). Entries may be shell globs over module names
	// ("nft_*"); names may use - or _.
	Modules []string `yaml:"modules"`
}

// Rootfs describes the read-only root filesystem.
type Rootfs struct {
	// Compression is the squashfs compressor: "xz" (default) or "zstd".
	Compression string `yaml:"compression"`
	// Modules are shipped in the rootfs and loaded by stage 2, same
	// syntax as Initramfs.Modules.
	Modules []string `yaml:"modules"`
	// Optional are modules to ship and load when the kernel has them,
	// without failing the build when it does not.
	Optional []string `yaml:"optional_modules"`
	// Shipped are modules put into the rootfs but not loaded at boot: the
	// kernel loads them on demand (iptables matches, nft expressions, ipset
	// types) through /sbin/modprobe (busybox) and modules.alias. Same
	// syntax; a pattern matching nothing is an error.
	Shipped []string `yaml:"shipped_modules"`
}

// Partitions gives partition sizes in MiB.
type Partitions struct {
	ESPMiB   int64 `yaml:"esp_mib"`
	RootMiB  int64 `yaml:"root_mib"` // each of root-a and root-b
	StateMiB int64 `yaml:"state_mib"`
}

// Versions are the pins of versions.yaml this package reads.
type Versions struct {
	// Kestrel is the default release version.
	Kestrel string `yaml:"kestrel"`
	Debian  Debian `yaml:"debian"`
}

// Debian pins Debian packages. One kernel ABI and version for every arch:
// pick one the mirror has for amd64, arm64 and armhf.
type Debian struct {
	Suite          string `yaml:"suite"`
	KernelABI      string `yaml:"kernel_abi"`     // e.g. 6.1.0-50
	KernelVersion  string `yaml:"kernel_version"` // e.g. 6.1.176-1
	SystemdBootEFI string `yaml:"systemd-boot-efi"`
	BusyboxStatic  string `yaml:"busybox-static"`
	// Tzdata is the version of Debian's tzdata (architecture "all"), whose
	// zoneinfo tree kestrel.timezone needs; empty ships no zoneinfo.
	Tzdata string `yaml:"tzdata,omitempty"`
	// Dosfstools is the version of Debian's dosfstools, whose fsck.fat
	// checks the ESP at boot, and Libc6 the glibc it links against (only
	// the loader and the libraries fsck.fat needs go in). Both or neither:
	// empty ships no fsck.fat, and stage 2 then mounts the ESP unchecked.
	Dosfstools string `yaml:"dosfstools,omitempty"`
	Libc6      string `yaml:"libc6,omitempty"`
	// Firmware pins the packages image definitions take boot firmware
	// from (boot.firmware), by package name.
	Firmware map[string]string `yaml:"firmware,omitempty"`
}

// KernelPackage is the Debian package name of the image's kernel.
func (v Versions) KernelPackage(img Image) string {
	return "linux-image-" + v.Debian.KernelABI + "-" + img.Kernel.Flavour
}

// KernelRelease is `uname -r` of the image's kernel (the modules directory).
func (v Versions) KernelRelease(img Image) string {
	return v.Debian.KernelABI + "-" + img.Kernel.Flavour
}

// LoadImage reads and validates an image definition.
func LoadImage(path string) (Image, error) {
	var img Image
	data, err := os.ReadFile(path)
	if err != nil {
		return img, fmt.Errorf("image definition: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&img); err != nil {
		return img, fmt.Errorf("image definition %s: %w", path, err)
	}
	if err := img.Validate(); err != nil {
		return img, fmt.Errorf("image definition %s: %w", path, err)
	}
	return img, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Validate checks the definition and fills defaults.
func (img *Image) Validate() error {
	var errs []error
	if !nameRE.MatchString(img.Name) {
		errs = append(errs, fmt.Errorf("name %q: want lower-case letters, digits, . _ -", img.Name))
	}
	switch img.Arch {
	case "amd64", "arm64":
	case "arm":
		if img.GOARM == "" {
			img.GOARM = "7"
		}
	default:
		errs = append(errs, fmt.Errorf("arch %q: want amd64, arm64 or arm", img.Arch))
	}
	if img.DebianArch == "" {
		errs = append(errs, errors.New("debian_arch: missing"))
	}
	if img.Kernel.Flavour == "" {
		errs = append(errs, errors.New("kernel.flavour: missing"))
	}
	switch img.Boot.Chain {
	case ChainSystemdBoot:
		if img.Boot.Loader == "" || img.Boot.LoaderPath == "" {
			errs = append(errs, errors.New("boot.loader and boot.loader_path: both required for systemd-boot"))
		}
		if img.Boot.KernelCommand != "" || len(img.Boot.Firmware) > 0 || img.Boot.ConfigTxt != "" {
			errs = append(errs, errors.New("boot.kernel_command, boot.firmware, boot.config_txt: only for uboot-script"))
		}
	case ChainUBootScript:
		if img.Boot.Loader != "" || img.Boot.LoaderPath != "" {
			errs = append(errs, errors.New("boot.loader, boot.loader_path: only for systemd-boot"))
		}
		if img.Boot.KernelCommand != "booti" && img.Boot.KernelCommand != "bootz" {
			errs = append(errs, fmt.Errorf("boot.kernel_command %q: want booti (arm64 Image) or bootz (arm zImage)", img.Boot.KernelCommand))
		}
		for i, f := range img.Boot.Firmware {
			if f.Package == "" || len(f.Files) == 0 {
				errs = append(errs, fmt.Errorf("boot.firmware[%d]: package and files required", i))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("boot.chain %q: want %s or %s", img.Boot.Chain, ChainSystemdBoot, ChainUBootScript))
	}
	for _, w := range img.Boot.Cmdline {
		if w == "" || strings.ContainsAny(w, " \t\n") {
			errs = append(errs, fmt.Errorf("boot.cmdline: %q is not one word", w))
		}
	}
	switch img.Initramfs.Compression {
	case "":
		img.Initramfs.Compression = "lz4"
	case "lz4", "zstd", "gzip", "none":
	default:
		errs = append(errs, fmt.Errorf("initramfs.compression %q: want lz4, zstd, gzip or none", img.Initramfs.Compression))
	}
	switch img.Rootfs.Compression {
	case "":
		img.Rootfs.Compression = "xz"
	case "xz", "zstd":
	default:
		errs = append(errs, fmt.Errorf("rootfs.compression %q: want xz or zstd", img.Rootfs.Compression))
	}
	p := img.Partitions
	if p.ESPMiB < 100 {
		errs = append(errs, fmt.Errorf("partitions.esp_mib %d: want >= 100 (FAT32 firmware quirks)", p.ESPMiB))
	} else if err := diskimage.CheckESPSize(p.ESPMiB); err != nil {
		// Refused rather than rounded: the definition says what is built.
		errs = append(errs, fmt.Errorf("partitions.esp_mib: %w", err))
	}
	if p.RootMiB < 16 {
		errs = append(errs, fmt.Errorf("partitions.root_mib %d: want >= 16", p.RootMiB))
	}
	if p.StateMiB < 16 {
		errs = append(errs, fmt.Errorf("partitions.state_mib %d: want >= 16", p.StateMiB))
	}
	return errors.Join(errs...)
}

// LoadVersions reads the sections of versions.yaml this package owns.
func LoadVersions(path string) (Versions, error) {
	var v Versions
	data, err := os.ReadFile(path)
	if err != nil {
		return v, fmt.Errorf("versions: %w", err)
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return v, fmt.Errorf("versions %s: %w", path, err)
	}
	for key, dst := range map[string]any{"kestrel": &v.Kestrel, "debian": &v.Debian} {
		node, ok := top[key]
		if !ok {
			return v, fmt.Errorf("versions %s: no %q section", path, key)
		}
		if err := decodeStrict(&node, dst); err != nil {
			return v, fmt.Errorf("versions %s: %s: %w", path, key, err)
		}
	}
	d := v.Debian
	for name, val := range map[string]string{
		"debian.kernel_abi": d.KernelABI, "debian.kernel_version": d.KernelVersion,
		"debian.systemd-boot-efi": d.SystemdBootEFI, "debian.busybox-static": d.BusyboxStatic,
	} {
		if val == "" {
			return v, fmt.Errorf("versions %s: %s: missing", path, name)
		}
	}
	if (d.Dosfstools == "") != (d.Libc6 == "") {
		return v, fmt.Errorf("versions %s: debian.dosfstools and debian.libc6: give both or neither (fsck.fat cannot run without its glibc)", path)
	}
	return v, nil
}

// decodeStrict decodes node into dst rejecting unknown keys (yaml.Node's
// own Decode has no KnownFields switch, so re-encode and decode).
func decodeStrict(node *yaml.Node, dst any) error {
	raw, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(dst)
}
