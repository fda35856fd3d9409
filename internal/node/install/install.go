// Package install is `kestrel install`: it puts Kestrel from the live ISO
// onto a machine's disk, laid out like the release's disk image (ESP,
// root-a, root-b, state; sizes and command line from the ISO's
// layout.ISOInstall), then the caller powers off or reboots.
//
// What is written, in order, once every check has passed:
//
//  1. the first and last MiB of the disk are zeroed (old partition tables
//     and filesystem signatures) and a new GPT is written with go-diskfs;
//  2. the ESP and the state filesystem are the ISO's images
//     (layout.ISOESPImage, ISOStateImage: made by the disk image's own
//     code), decompressed onto their partitions; stage 1 grows state to
//     the end of the disk on the first boot, as for a flashed image;
//  3. slot A: the ISO's release is verified (signature with the trusted
//     keys of the running system, every part's sha256) and written by
//     update.WriteSlot, the upgrade's own code: root image streamed and
//     read back, kernel and initramfs on the ESP, a good boot entry last;
//  4. the config, if any, goes to the state partition as
//     kestrel/config.yaml, mode 0600 in a 0700 directory.
//
// Refused before anything is written (Check): a disk that is not a whole
// disk, the disk the live system runs from or any disk in use (mounted,
// or held by device-mapper or a loop device), a disk smaller than the
// layout needs (the message says the minimum), a disk with partitions
// unless Force, and a config that does not validate (file:line:col).
//
// Limits: no_format (installing into existing partitions) is not
// supported: the A/B layout needs its own partitions; UEFI only;
// 512-byte logical sectors assumed for the GPT.
package install

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/disklayout"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/esp"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/node/update"
	"github.com/kestrel-os/kestrel/internal/release"
)

// Options are one install's inputs.
type Options struct {
	Device string // the disk, "/dev/vda"
	// Config is the config to install (nil: none), ConfigName its name in
	// error messages.
	Config     []byte
	ConfigName string
	Force      bool // overwrite a disk that has partitions
	// ISO is where the ISO is mounted (layout.ISOMount); Keys the release
	// keys the running system trusts (layout.ReleaseKeysDir).
	ISO  string
	Keys []ed25519.PublicKey
	// Sys, Dev, MountInfo: "/sys", "/dev", "/proc/self/mounts".
	Sys, Dev, MountInfo string
	// Mount and Unmount mount the new ESP and state partition under
	// TmpDir while they are filled.
	Mount   mounts.MountFunc
	Unmount func(target string, flags int) error
	TmpDir  string
	// Out receives progress: one rewritten line on a terminal (Terminal),
	// plain lines otherwise (a serial console, a log).
	Out      io.Writer
	Terminal bool
	// PartitionWait bounds the wait for the kernel to show the new
	// partitions (0: 30 s).
	PartitionWait time.Duration
	// AllowLoop makes loop devices targets (the host tests install onto
	// them); never set on a node.
	AllowLoop bool
}

// Disk is a whole disk as the installer shows it.
type Disk struct {
	blockdev.Device
	Path       string            // device node
	Model      string            // sysfs device/model ("" when none)
	Partitions []blockdev.Device // its partitions, by name
	InUse      string            // why it is in use ("" when it is not)
}

// Layout reads the ISO's disk layout.
func Layout(iso string) (disklayout.Layout, error) {
	data, err := os.ReadFile(filepath.Join(iso, layout.ISOInstall))
	if err != nil {
		return disklayout.Layout{}, fmt.Errorf("the live ISO's disk layout: %w (is this the live system?)", err)
	}
	return disklayout.Parse(data)
}

// Disks lists the whole disks under sys that an install could go to:
// not loop, RAM, device-mapper or CD devices, which are never
// targets; in-use disks are listed with InUse set.
func Disks(sys, dev, mountInfo string, allowLoop bool) ([]Disk, error) {
	devs, err := blockdev.List(sys)
	if err != nil {
		return nil, err
	}
	used, err := usedDevices(mountInfo)
	if err != nil {
		return nil, err
	}
	var out []Disk
	for _, d := range devs {
		if d.IsPartition() || !(installable(d.Name) || allowLoop && strings.HasPrefix(d.Name, "loop")) {
			continue
		}
		k := Disk{Device: d, Path: d.Path(dev)}
		if b, err := os.ReadFile(filepath.Join(sys, "class", "block", d.Name, "device", "model")); err == nil {
			k.Model = strings.TrimSpace(string(b))
		}
		for _, p := range devs {
			if p.Disk == d.Name {
				k.Partitions = append(k.Partitions, p)
			}
		}
		k.InUse = inUse(sys, dev, k, used)
		out = append(out, k)
	}
	return out, nil
}

// installable tells target disks from virtual and optical ones by kernel
// name.
func installable(name string) bool {
	for _, p := range []string{"loop", "ram", "dm-", "sr", "zram", "md", "nbd"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// usedDevices returns the mount sources of mountInfo (/proc/self/mounts).
func usedDevices(mountInfo string) (map[string]string, error) {
	data, err := os.ReadFile(mountInfo)
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	used := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], "/") {
			used[f[0]] = f[1]
		}
	}
	return used, nil
}

// inUse says why k is in use: it or a partition is mounted, or held by
// another block device (dm-verity, a loop device's backing file is on
// it: the live ISO's disk).
func inUse(sys, dev string, k Disk, used map[string]string) string {
	for _, d := range append([]blockdev.Device{k.Device}, k.Partitions...) {
		if mp, ok := used[d.Path(dev)]; ok {
			return fmt.Sprintf("%s is mounted on %s", d.Path(dev), mp)
		}
		if h, _ := os.ReadDir(filepath.Join(sys, "class", "block", d.Name, "holders")); len(h) > 0 {
			return fmt.Sprintf("%s is held by %s", d.Path(dev), h[0].Name())
		}
		if l := loopOver(sys, d.Path(dev)); l != "" {
			return fmt.Sprintf("%s backs loop device %s", d.Path(dev), l)
		}
	}
	return ""
}

// loopOver names a loop device whose backing file is path (the live
// system mounts its ISO through one), or "".
func loopOver(sys, path string) string {
	loops, _ := filepath.Glob(filepath.Join(sys, "class", "block", "loop*", "loop", "backing_file"))
	for _, f := range loops {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == path {
			return filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}

// Check refuses what Run must not write, with nothing written, and
// returns the disk.
func Check(o Options, l disklayout.Layout) (Disk, error) {
	disks, err := Disks(o.Sys, o.Dev, o.MountInfo, o.AllowLoop)
	if err != nil {
		return Disk{}, err
	}
	dev := o.Device
	if real, err := filepath.EvalSymlinks(dev); err == nil {
		dev = real
	}
	i := slices.IndexFunc(disks, func(k Disk) bool { return k.Path == dev })
	if i < 0 {
		var names []string
		for _, k := range disks {
			names = append(names, k.Path)
		}
		return Disk{}, fmt.Errorf("%s is not a disk to install to (disks: %s)", o.Device, strings.Join(names, ", "))
	}
	k := disks[i]
	if k.InUse != "" {
		return k, fmt.Errorf("refusing %s: it is in use (%s); is it the disk the live system runs from?", k.Path, k.InUse)
	}
	if k.Size < l.MinBytes() {
		return k, fmt.Errorf("refusing %s: %s is too small, Kestrel needs at least %s (ESP %d MiB, 2 × root %d MiB, state %d MiB)",
			k.Path, blockdev.HumanSize(k.Size), blockdev.HumanSize(l.MinBytes()), l.ESPMiB, l.RootMiB, l.StateMiB)
	}
	if len(k.Partitions) > 0 && !o.Force {
		var names []string
		for _, p := range k.Partitions {
			names = append(names, p.Name)
		}
		return k, fmt.Errorf("refusing %s: it has partitions (%s); --force to overwrite them", k.Path, strings.Join(names, ", "))
	}
	if what := signature(k.Path); what != "" && !o.Force {
		return k, fmt.Errorf("refusing %s: it holds %s; --force to overwrite it", k.Path, what)
	}
	if err := ValidateConfig(o.ConfigName, o.Config); err != nil {
		return k, err
	}
	return k, nil
}

// signature says what the first two sectors of the disk at path hold,
// when it is a partition table or a filesystem's boot sector ("" when
// they are blank or unreadable): the kernel lists no partitions for a
// table it cannot read, or for a loop device without partition scanning.
func signature(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 1024)
	if _, err := io.ReadFull(f, b); err != nil {
		return ""
	}
	switch {
	case string(b[512:520]) == "EFI PART":
		return "a GPT partition table"
	case b[510] == 0x55 && b[511] == 0xaa:
		return "an MBR partition table or a filesystem (boot signature 55 AA)"
	}
	return ""
}

// ValidateConfig checks a config to install like `kestrel config
// validate`: any problem, an unknown key included, is refused, each named
// file:line:col.
func ValidateConfig(name string, data []byte) error {
	if data == nil {
		return nil
	}
	doc, err := config.Parse(name, data)
	if err == nil {
		_, err = doc.Config()
	}
	if err != nil {
		return fmt.Errorf("refusing the config: %w", err)
	}
	return nil
}

// Run checks, then installs (see the package doc). A failure after the
// checks leaves a disk that does not boot Kestrel (no boot entry is
// written before slot A is complete); running the install again repairs
// it.
func Run(ctx context.Context, o Options) error {
	if o.PartitionWait == 0 {
		o.PartitionWait = 30 * time.Second
	}
	say := func(format string, args ...any) {
		if o.Out != nil {
			fmt.Fprintf(o.Out, format+"\n", args...)
		}
	}
	l, err := Layout(o.ISO)
	if err != nil {
		return err
	}
	k, err := Check(o, l)
	if err != nil {
		return err
	}
	rel, err := release.OpenDir(filepath.Join(o.ISO, filepath.Dir(layout.ISORelease)), o.Keys)
	if err != nil {
		return fmt.Errorf("the ISO's release: %w", err)
	}
	defer rel.Close()
	m := rel.Manifest()
	say("installing Kestrel %s onto %s (%s)", m.Version, k.Path, strings.TrimSpace(blockdev.HumanSize(k.Size)+" "+k.Model))

	if err := partition(k, l); err != nil {
		return err
	}
	parts, err := waitPartitions(ctx, o, k, o.PartitionWait)
	if err != nil {
		return err
	}
	say("partitions written: ESP %d MiB, root-a and root-b %d MiB, state %d MiB", l.ESPMiB, l.RootMiB, l.StateMiB)
	for name, img := range map[string]string{layout.PartESP: layout.ISOESPImage, layout.PartState: layout.ISOStateImage} {
		if err := gunzipTo(filepath.Join(o.ISO, img), parts[name].Path(o.Dev)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	say("ESP and state filesystems written")

	espDir := filepath.Join(o.TmpDir, "esp")
	if err := esp.Mount([]blockdev.Device{parts[layout.PartESP]}, esp.Options{Sys: o.Sys, Dev: o.Dev, Target: espDir}, o.Mount); err != nil {
		return fmt.Errorf("mount the new ESP: %w", err)
	}
	// The ESP image has loader.conf but no entries yet.
	if err := os.MkdirAll(filepath.Join(espDir, layout.ESPEntriesDir), 0o755); err != nil {
		o.Unmount(espDir, 0)
		return fmt.Errorf("the new ESP: %w", err)
	}
	_, err = update.WriteSlot(ctx, rel, update.Target{
		Slot: layout.Slots[0], Device: parts[layout.PartRootA].Path(o.Dev), ESP: espDir,
		Chain: bootslot.BLS{ESP: espDir}, Options: l.Options,
	}, update.Options{Out: o.Out, Terminal: o.Terminal})
	if uerr := o.Unmount(espDir, 0); err == nil && uerr != nil {
		err = fmt.Errorf("unmount the new ESP: %w", uerr)
	}
	if err != nil {
		return err
	}
	if o.Config != nil {
		if err := writeConfig(o, parts[layout.PartState].Path(o.Dev), o.Config); err != nil {
			return err
		}
		say("config written to the state partition (kestrel/config.yaml, 0600)")
	}
	syscall.Sync()
	say("installed Kestrel %s on %s", m.Version, k.Path)
	return nil
}

// partition zeroes the disk's first and last MiB and writes the GPT.
// GUIDs are random: every installed disk is its own, unlike a flashed
// image's.
func partition(k Disk, l disklayout.Layout) error {
	var f *os.File
	err := whileBusy(busyWait, func() (err error) {
		f, err = os.OpenFile(k.Path, os.O_WRONLY|unix.O_EXCL, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("open %s exclusively: %w", k.Path, err)
	}
	zero := make([]byte, 1<<20)
	for _, off := range []int64{0, k.Size - int64(len(zero))} {
		if _, err := f.WriteAt(zero, off); err != nil {
			f.Close()
			return fmt.Errorf("wipe %s: %w", k.Path, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	const sector = 512
	align := uint64(disklayout.AlignMiB << 20 / sector)
	plan := []struct {
		name string
		typ  gpt.Type
		mib  int64
	}{
		{layout.PartESP, gpt.EFISystemPartition, l.ESPMiB},
		{layout.PartRootA, gpt.LinuxRootX86_64, l.RootMiB},
		{layout.PartRootB, gpt.LinuxRootX86_64, l.RootMiB},
		{layout.PartState, gpt.LinuxFilesystem, l.StateMiB},
	}
	var parts []*gpt.Partition
	start := align
	for i, p := range plan {
		n := uint64(p.mib) << 20 / sector
		parts = append(parts, &gpt.Partition{Index: i + 1, Start: start, End: start + n - 1, Size: n * sector,
			Type: p.typ, Name: p.name, GUID: uuid.NewString()})
		start += n
	}
	var d *disk.Disk
	err = whileBusy(busyWait, func() (err error) {
		d, err = diskfs.Open(k.Path, diskfs.WithOpenMode(diskfs.ReadWriteExclusive), diskfs.WithSectorSize(diskfs.SectorSize512))
		return err
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", k.Path, err)
	}
	defer d.Close()
	table := &gpt.Table{Partitions: parts, LogicalSectorSize: sector, PhysicalSectorSize: sector, GUID: uuid.NewString(), ProtectiveMBR: true}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("partition %s: %w", k.Path, err)
	}
	return nil
}

// busyWait is how long partition waits for a busy disk.
const busyWait = 10 * time.Second

// whileBusy runs open until it does not fail with EBUSY, for up to wait. An exclusive open of the disk fails with EBUSY while anyone
// holds it open, and PID 1 forking a service meanwhile is someone: the
// child holds a copy of every descriptor until it execs, so the second
// exclusive open right after the first one's close can find the disk
// still claimed. A disk that stays busy (mounted, in use) is reported.
func whileBusy(wait time.Duration, open func() error) error {
	deadline := time.Now().Add(wait)
	for {
		err := open()
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPartitions asks the kernel to reread the table and waits for the
// four partitions of k; it returns them by GPT name and updates
// k.Partitions.
func waitPartitions(ctx context.Context, o Options, k Disk, wait time.Duration) (map[string]blockdev.Device, error) {
	if f, err := os.Open(k.Path); err == nil {
		unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0) // go-diskfs may have done it; EBUSY then
		f.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	want := []string{layout.PartESP, layout.PartRootA, layout.PartRootB, layout.PartState}
	for {
		devs, err := blockdev.List(o.Sys)
		if err == nil {
			found := map[string]blockdev.Device{}
			var mine []blockdev.Device
			for _, d := range devs {
				if d.Disk == k.Name {
					mine = append(mine, d)
					if slices.Contains(want, d.PartName) {
						found[d.PartName] = d
					}
				}
			}
			if len(found) == len(want) && allNodes(o.Dev, found) {
				k.Partitions = mine
				return found, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the kernel did not show the new partitions of %s within %s", k.Path, wait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allNodes(dev string, parts map[string]blockdev.Device) bool {
	for _, p := range parts {
		if _, err := os.Stat(p.Path(dev)); err != nil {
			return false
		}
	}
	return true
}

// gunzipTo decompresses the gzip file src onto the block device dst and
// syncs it.
func gunzipTo(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.CopyBuffer(out, zr, make([]byte, 4<<20)); err != nil {
		return fmt.Errorf("%s -> %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// writeConfig mounts the new state filesystem and writes the config.
func writeConfig(o Options, dev string, data []byte) error {
	dir := filepath.Join(o.TmpDir, "state")
	m := mounts.Mount{Source: dev, Target: dir, FSType: "ext4", Mode: 0o700, Flags: syscall.MS_NOSUID | syscall.MS_NODEV}
	if err := m.Do(o.Mount); err != nil {
		return fmt.Errorf("mount the new state partition: %w", err)
	}
	err := func() error {
		cdir := filepath.Join(dir, "kestrel")
		if err := os.MkdirAll(cdir, 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(cdir, "config.yaml"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if uerr := o.Unmount(dir, 0); err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("config on the state partition: %w", err)
	}
	return nil
}

// ErrNoFormat refuses no_format.
var ErrNoFormat = errors.New("install.no_format is not supported: Kestrel's A/B layout needs its own partitions")
