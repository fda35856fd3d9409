// Package diskimage writes Kestrel's raw GPT disk image: an ESP (FAT32,
// written with go-diskfs), root-a holding a squashfs image byte for byte,
// an empty root-b of the same size, and an ext4 state partition (made with
// mkfs.ext4 and debugfs from e2fsprogs, then copied in). go-diskfs's FAT32
// output is patched after writing (fatfix.go) so that fsck.fat -n passes
// and the bytes are reproducible.
//
// Partitions are 1 MiB aligned and found by their GPT names (package
// layout); the image file is sparse, so the empty root-b and the unused
// parts cost no disk space on the build host.
//
// GUIDs are derived from a caller-given seed (name-based UUIDs), so the
// same inputs give the same image bytes; every device flashed from one
// image therefore shares its disk and partition GUIDs, as with any
// distribution's disk image. Nothing may rely on them being unique: stage
// 1 looks partitions up by name.
//
// Limits: GPT, with an optional hybrid MBR for the Raspberry Pi's boot
// ROM (Spec.HybridMBR; no pure MBR layout); 512 byte sectors; the ESP is written once, files are never updated in place;
// the state filesystem holds only empty directories.
package diskimage

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"

	"github.com/kestrel-os/kestrel/internal/layout"
)

const (
	sectorSize = 512
	mib        = 1 << 20
	// alignment of every partition start and of the first one.
	alignSectors = mib / sectorSize
)

// Root partition type GUIDs per GOARCH, from the Discoverable Partitions
// Specification; stage 1 does not rely on them (it uses names), but
// partitioning tools show them as "Linux root (x86-64)" and so on.
var rootTypes = map[string]gpt.Type{
	"amd64": gpt.LinuxRootX86_64,
	"arm64": gpt.Type("B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
	"arm":   gpt.Type("69DAD710-2CE4-4E3C-B16C-21A1D49ABED3"),
}

// Spec describes one disk image.
type Spec struct {
	// Arch is the target GOARCH (root partition type).
	Arch string
	// Seed makes the GUIDs (e.g. "kestrel-0.1.0-amd64").
	Seed string
	// Sizes in MiB.
	ESPMiB, RootMiB, StateMiB int64
	// ESP maps paths on the ESP ("/EFI/BOOT/BOOTX64.EFI") to host files.
	ESP map[string]string
	// ESPData maps paths on the ESP to generated contents (loader.conf,
	// entries).
	ESPData map[string][]byte
	// RootA is the host path of the squashfs written to root-a.
	RootA string
	// StateDirs are created empty at the root of the state filesystem.
	StateDirs []string
	// Time is the fixed timestamp (seconds) of every file on the ESP
	// (from 1980 on, FAT's epoch) and in the state filesystem.
	Time int64
	// HybridMBR writes a hybrid MBR naming the ESP as a FAT32 partition
	// next to the GPT (hybridmbr.go), for boards whose boot ROM reads MBR.
	HybridMBR bool
	// PowerOfTwo rounds the image size up to a power of two (SD cards in
	// qemu); the state partition still ends where its size says.
	PowerOfTwo bool
}

// Partitions returns the GPT partitions of spec, in on-disk order, and the
// image size in bytes.
func (s Spec) Partitions() ([]*gpt.Partition, int64, error) {
	rootType, ok := rootTypes[s.Arch]
	if !ok {
		return nil, 0, fmt.Errorf("disk image: no root partition type for arch %q", s.Arch)
	}
	plan := []struct {
		name string
		typ  gpt.Type
		mib  int64
	}{
		{layout.PartESP, gpt.EFISystemPartition, s.ESPMiB},
		{layout.PartRootA, rootType, s.RootMiB},
		{layout.PartRootB, rootType, s.RootMiB},
		{layout.PartState, gpt.LinuxFilesystem, s.StateMiB},
	}
	var parts []*gpt.Partition
	start := uint64(alignSectors)
	for i, p := range plan {
		if p.mib <= 0 {
			return nil, 0, fmt.Errorf("disk image: partition %s: size %d MiB", p.name, p.mib)
		}
		sectors := uint64(p.mib) * alignSectors
		parts = append(parts, &gpt.Partition{
			Index: i + 1,
			Start: start,
			End:   start + sectors - 1,
			Size:  sectors * sectorSize,
			Type:  p.typ,
			Name:  p.name,
			GUID:  s.guid("part/" + p.name),
		})
		start += sectors
	}
	// One MiB at the end leaves room for the backup GPT (33 sectors).
	size := int64(start+alignSectors) * sectorSize
	if s.PowerOfTwo {
		size = nextPowerOfTwo(size)
	}
	return parts, size, nil
}

// volumeID is the ESP's FAT serial number, derived like the GUIDs.
func (s Spec) volumeID() uint32 {
	u := uuid.NewSHA1(uuid.NameSpaceOID, []byte("kestrel/"+s.Seed+"/esp-serial"))
	return binary.BigEndian.Uint32(u[:4])
}

func (s Spec) guid(what string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("kestrel/"+s.Seed+"/"+what)).String()
}

// Build writes the image to out (replacing it) through a temporary file.
func Build(s Spec, out string) error {
	parts, size, err := s.Partitions()
	if err != nil {
		return err
	}
	tmp := out + ".partial"
	os.Remove(tmp)
	defer os.Remove(tmp)
	d, err := diskfs.Create(tmp, size, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", out, err)
	}
	err = fill(d, s, parts, filepath.Dir(out))
	if cerr := d.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("disk image %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("disk image %s: %w", out, err)
	}
	return nil
}

// fill writes the partition table and every partition's contents.
func fill(d *disk.Disk, s Spec, parts []*gpt.Partition, tmpDir string) error {
	table := &gpt.Table{
		Partitions:         parts,
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		GUID:               s.guid("disk"),
		ProtectiveMBR:      true,
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	if s.HybridMBR {
		w, err := d.Backend.Writable()
		if err != nil {
			return err
		}
		if err := writeHybridMBR(w, parts[0].Start, parts[0].Size/sectorSize); err != nil {
			return err
		}
	}
	if err := writeESP(d, 1, int64(parts[0].Start*sectorSize), int64(parts[0].Size), s); err != nil {
		return err
	}
	if err := copyInto(d, parts[1], s.RootA); err != nil {
		return fmt.Errorf("%s: %w", layout.PartRootA, err)
	}
	state, err := MakeState(s, int64(parts[3].Size), tmpDir)
	if err != nil {
		return err
	}
	defer os.Remove(state)
	if err := copyInto(d, parts[3], state); err != nil {
		return fmt.Errorf("%s: %w", layout.PartState, err)
	}
	return nil
}

// writeESP formats partition part of d (0: the whole disk), size bytes
// from byte off, as FAT32, writes the ESP files, directories first, and
// repairs what go-diskfs leaves wrong (fatfix.go). Sizes go-diskfs lays
// out wrongly are refused (CheckESPSize).
func writeESP(d *disk.Disk, part int, off, size int64, s Spec) error {
	if size%mib != 0 {
		return fmt.Errorf("ESP: %d bytes: not a whole number of MiB", size)
	}
	if err := CheckESPSize(size / mib); err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{
		Partition:    part,
		FSType:       filesystem.TypeFat32,
		VolumeLabel:  layout.LabelESP,
		Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("ESP: create FAT32: %w", err)
	}
	files := map[string]func() (io.ReadCloser, error){}
	for p, src := range s.ESP {
		files[p] = func() (io.ReadCloser, error) { return os.Open(src) }
	}
	for p, data := range s.ESPData {
		if _, dup := files[p]; dup {
			return fmt.Errorf("ESP: %s given twice", p)
		}
		files[p] = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(data))), nil }
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if dir := path.Dir(p); dir != "/" {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("ESP: mkdir %s: %w", dir, err)
			}
		}
		r, err := files[p]()
		if err != nil {
			return fmt.Errorf("ESP: %s: %w", p, err)
		}
		err = writeFATFile(fs, p, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("ESP: %s: %w", p, err)
		}
	}
	w, err := d.Backend.Writable()
	if err != nil {
		return err
	}
	if err := fixFAT32(w, off, time.Unix(s.Time, 0), s.volumeID()); err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	return nil
}

func writeFATFile(fs filesystem.FileSystem, name string, r io.Reader) error {
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copyInto writes the host file src at the start of partition p.
func copyInto(d *disk.Disk, p *gpt.Partition, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if uint64(st.Size()) > p.Size {
		return fmt.Errorf("%s is %d MiB, the partition %d MiB", src, st.Size()/mib, p.Size/mib)
	}
	w, err := d.Backend.Writable()
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.NewOffsetWriter(w, int64(p.Start*sectorSize)), f); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// MakeState creates the ext4 state filesystem of size bytes in a
// temporary file in dir and returns its path (the ISO carries one for
// kestrel install). 4 KiB blocks (mkfs.ext4 would pick 1 KiB for a
// small filesystem) because stage 1 grows it to the whole disk online.
// The directories are made with debugfs rather than mkfs.ext4 -d, which
// would copy the build host's ctime into the inodes: with
// E2FSPROGS_FAKE_TIME every timestamp is s.Time and the bytes repeat.
func MakeState(s Spec, size int64, dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".state-*.ext4")
	if err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	img := f.Name()
	f.Close()
	u := s.guid("state-fs")
	// e2fsprogs reads E2FSPROGS_FAKE_TIME=0 as "not set": 1 is the epoch.
	env := append(os.Environ(), fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", max(s.Time, 1)))
	mkfs := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-T", "default",
		"-L", layout.LabelState, "-U", u, "-E", "root_owner=0:0,hash_seed="+u,
		img, fmt.Sprintf("%dk", size/1024))
	mkfs.Env = env
	if out, err := mkfs.CombinedOutput(); err != nil {
		os.Remove(img)
		return "", fmt.Errorf("state: mkfs.ext4: %w\n%s", err, out)
	}
	var script strings.Builder
	for _, sd := range s.StateDirs {
		fmt.Fprintf(&script, "mkdir %s\n", sd)
		if sd == "root" {
			fmt.Fprintf(&script, "set_inode_field %s mode 040700\n", sd)
		}
	}
	debugfs := exec.Command("debugfs", "-w", "-f", "-", img)
	debugfs.Env = env
	debugfs.Stdin = strings.NewReader(script.String())
	var stderr strings.Builder
	debugfs.Stderr = &stderr
	err = debugfs.Run()
	// debugfs exits 0 even when a command fails; its errors go to stderr
	// after a version banner.
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !strings.HasPrefix(line, "debugfs ") {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		os.Remove(img)
		return "", fmt.Errorf("state: debugfs: %v %s", err, strings.Join(problems, "; "))
	}
	return img, nil
}

// BuildFAT writes s's ESP alone, as a FAT32 filesystem image of s.ESPMiB
// MiB with no partition table, to out (replacing it): the ISO's EFI boot
// image (internal/build/isoimage) is this. Only Arch, Seed, ESPMiB, ESP,
// ESPData and Time are read.
func BuildFAT(s Spec, out string) error {
	size := s.ESPMiB * mib
	tmp := out + ".partial"
	os.Remove(tmp)
	defer os.Remove(tmp)
	d, err := diskfs.Create(tmp, size, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("FAT image %s: %w", out, err)
	}
	err = writeESP(d, 0, 0, size, s)
	if cerr := d.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("FAT image %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("FAT image %s: %w", out, err)
	}
	return nil
}
