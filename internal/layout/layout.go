// Package layout names the on-disk and in-memory places that the image
// builder and the on-device binary must agree on: GPT partition names,
// filesystem labels, paths on the ESP, paths inside the initramfs and the
// rootfs, and kernel command-line keys.
//
// It holds names only, no logic, so that the builder (host side) and stage 1
// and stage 2 (device side) can never drift apart. Anything that is a policy
// (sizes, module lists, versions) lives in images/ and the versions file, not
// here.
package layout

// GPT partition names. Stage 1 finds partitions by these names, never by
// index, so a board that needs extra partitions (firmware, MBR hybrid) keeps
// working.
const (
	PartESP   = "esp"
	PartRootA = "root-a"
	PartRootB = "root-b"
	PartState = "state"
)

// Filesystem labels.
const (
	LabelESP   = "KESTREL"       // FAT32 volume label (11 chars max)
	LabelState = "KESTREL_STATE" // ext4 label (16 chars max)
)

// Slots are the two A/B root slots.
var Slots = []string{"a", "b"}

// RootPartition returns the GPT partition name of a slot ("a" -> "root-a").
func RootPartition(slot string) string { return "root-" + slot }

// Paths on the ESP (FAT32, case-insensitive). Per-slot kernels and
// initramfs live under /kestrel/<slot>/.
const (
	ESPBootloaderX64   = "/EFI/BOOT/BOOTX64.EFI"
	ESPBootloaderAA64  = "/EFI/BOOT/BOOTAA64.EFI"
	ESPLoaderConf      = "/loader/loader.conf"
	ESPEntriesDir      = "/loader/entries"
	ESPSlotDir         = "/kestrel" // + "/<slot>"
	ESPKernelName      = "vmlinuz"
	ESPInitrdName      = "initrd"
	ESPUserConfig      = "/config.yaml" // user-editable config next to the bootloader
	ESPEntryNamePrefix = "kestrel-"     // entries are kestrel-<slot>[+tries].conf
	// The U-Boot script chain (internal/ubootab): the script U-Boot's
	// distro boot runs, its A/B state file, and each slot's entry file
	// (/kestrel/<slot>/entry.env).
	ESPBootScript   = "/boot.scr"
	ESPABState      = "/kestrel/ab.env"
	ESPEntryEnvName = "entry.env"
)

// The config files, for the config package and for stage 1, which cannot
// link it but must know where the initramfs phase looks (see
// stage1.PhaseIdle). The state paths are relative to StateMount.
const (
	ConfigDefaults   = "/usr/lib/kestrel/config.yaml" // the image's defaults, in the rootfs
	StateConfigFile  = "kestrel/config.yaml"
	StateConfigDir   = "kestrel/config.d"
	StateLastGoodDir = "kestrel/last-good" // lastgood's copies of the files above
)

// VerityRootName is the device-mapper name of the verified root stage 1
// opens (dmverity.RootName); the NoCloud probe leaves it alone.
const VerityRootName = "kestrel-root"

// Kernel command-line keys.
const (
	CmdlineSlot  = "kestrel.slot"  // which root slot stage 1 mounts (a|b)
	CmdlineDebug = "kestrel.debug" // verbose stage 1/2 logging
	// CmdlineRescueTimeout is how many seconds stage 1 keeps the rescue
	// shell open after refusing a root that fails verification before it
	// reboots into the other slot (0: wait for ever).
	CmdlineRescueTimeout = "kestrel.rescue_timeout"
)

// Paths inside the initramfs and the rootfs.
const (
	// Init is the stage-1 entry point in the initramfs (the kestrel
	// binary), which also runs stage 2 (stage1.SwitchRoot).
	Init = "/init"
	// SbinInit is the stage-2 entry point in the rootfs (the kestrel
	// binary): stage 2's argv[0], and what runs when the initramfs's
	// binary cannot be exec'd again.
	SbinInit = "/sbin/init"
	// SelfExe is the running program's own file, a magic link in /proc
	// that reaches it from inside a chroot as well: PID 1 execs its own
	// binary, the initramfs's, through it (stage1.SwitchRoot, sshd).
	SelfExe = "/proc/self/exe"
	// KestrelBin is where the kestrel binary lives in the rootfs; the CLI
	// (`kestrel status`, `kestrel poweroff`, ...) is this path.
	KestrelBin = "/usr/bin/kestrel"
	// ModuleList lists, one name per line, the kernel modules to load at
	// boot, in order; the builder writes it into both the initramfs (stage-1
	// set) and the rootfs (node set). modules.dep next to the modules
	// resolves their dependencies.
	ModuleList = "/usr/lib/kestrel/modules"
	// ModulesDir is the kernel modules tree; <kver> follows.
	ModulesDir = "/lib/modules"
	// OSRelease carries NAME, VERSION_ID, PRETTY_NAME; stage 2 reads the
	// version from it.
	OSRelease = "/etc/os-release"
	// StateMount is where stage 1 mounts the state partition inside the new
	// root; the persistent paths are bind mounts from it.
	StateMount = "/state"
	// ESPMount is where stage 2 mounts the ESP (boot counting, user config).
	ESPMount = "/boot/efi"
	// FsckFAT is Debian's fsck.fat (dosfstools) in the rootfs, with the
	// glibc files it loads; stage 2 checks the ESP with it before mounting
	// it read-write. An image built without it has none there.
	FsckFAT = "/sbin/fsck.fat"
	// NewRoot is where stage 1 assembles the root before switch_root.
	NewRoot = "/newroot"
	// RunDir holds runtime state (boot timings, status) on tmpfs.
	RunDir = "/run/kestrel"
	// BootTimes is written by stage 1 and extended by stage 2: one
	// "name seconds" line per boot stage, guest CLOCK_BOOTTIME.
	BootTimes = "/run/kestrel/boot-times"
	// BootHealth records whether this boot is good (internal/node/boot/boothealth): k3s
	// healthy within its time limit, or not.
	BootHealth = "/run/kestrel/boot-health"
	// LogDir holds the supervised services' rotated logs (<name>.log).
	LogDir = "/var/log"
	// ControlSocket is PID 1's unix socket (mode 0600) for the CLI:
	// one JSON request line, one JSON response line (internal/node/init/control).
	ControlSocket = "/run/kestrel/control.sock"
	// ReleaseKeysDir holds the ed25519 public keys (*.pub, PEM) a node
	// trusts to sign releases (internal/release); the builder bakes them
	// into both the rootfs and the initramfs.
	ReleaseKeysDir = "/etc/kestrel/release-keys"
	// RandomSeed carries entropy from one boot to the next (on the state
	// partition through the /var bind mount; internal/node/boot/randomseed).
	RandomSeed = "/var/lib/kestrel/random-seed"
)

// The live ISO (kestrel-build's isoimage writes it, stage 1's live path
// boots it, `kestrel install` copies from it). Stage 1 finds the ISO by its
// volume identifier on any whole disk (a CD drive, or a USB stick the ISO
// was written to), never by partition: a CD has no partition table.
const (
	ISOVolumeID = "KESTREL_LIVE"          // ISO 9660 volume identifier
	ISORootfs   = "/kestrel/rootfs"       // root partition image: squashfs + dm-verity tree
	ISORelease  = "/kestrel/release.json" // signed release manifest of the parts below
	ISOKernel   = "/kestrel/vmlinuz"
	ISOInitrd   = "/kestrel/initrd"
	// ISOESPImage and ISOStateImage are an installed disk's ESP (FAT32
	// with the loader and loader.conf, no slot yet) and empty state
	// filesystem (ext4, grown on first boot), gzip-compressed: what
	// kestrel install writes besides slot A, made by the disk image's code.
	ISOESPImage   = "/kestrel/esp.img.gz"
	ISOStateImage = "/kestrel/state.img.gz"
	ISOInstall    = "/kestrel/install.json" // the disk layout and command line the installer writes
	// ISOMount is where live stage 1 leaves the ISO mounted (read-only)
	// in the new root.
	ISOMount = "/run/kestrel/iso"
	// PartLiveESP is the GPT name of the ISO's FAT partition when the ISO
	// is a USB disk: not PartESP, so that a live stick plugged into an
	// installed node never makes that node's ESP ambiguous.
	PartLiveESP = "kestrel-live"
	// CmdlineLive makes stage 1 boot the ISO's root with state on tmpfs;
	// stage 2 then leaves the ESP and boot counting alone.
	CmdlineLive = "kestrel.live"
	// CmdlineMode=ModeInstall (the ISO's Install entry) runs kestrel
	// install on the console instead of a shell (k3OS: k3os.mode=install).
	CmdlineMode = "kestrel.mode"
	ModeInstall = "install"
	// CmdlineRescue makes stage 1 drop to the rescue shell at once.
	CmdlineRescue = "kestrel.rescue"
	// SlotLive is kestrel.slot on the ISO's entries.
	SlotLive = "live"
)

// PersistentDirs are bind-mounted from StateMount/<dir> onto /<dir>.
var PersistentDirs = []string{"var", "home", "root"}

// ReadyMarker starts the console line stage 2 prints when the system is
// ready; tests and benchmarks parse the key=value fields that follow.
const ReadyMarker = "KESTREL-READY"
