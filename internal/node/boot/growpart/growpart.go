// Package growpart grows the last partition of a GPT disk to the end of the
// disk and then grows the ext4 filesystem on it, online.
//
// The image ships a small state partition; on first boot the disk is larger
// (an SD card, a bigger VM disk). Grow rewrites the GPT with go-diskfs
// (moving the backup header and entry array to the new last sectors),
// tells the kernel the new partition size with the BLKPG ioctl (which works
// while other partitions of the disk are mounted, unlike BLKRRPART), and
// ResizeExt4 asks the mounted ext4 to grow with EXT4_IOC_RESIZE_FS.
//
// Both steps compare sizes first, so running them on every boot is
// idempotent and cheap: a grown disk is left alone.
//
// Limits: only the partition that ends last on the disk can grow (nothing
// is ever moved); only 512-byte logical sectors; only GPT; ext4 only (the
// kernel needs resize_inode or meta_bg, which mkfs.ext4 sets by default);
// shrinking is never attempted.
package growpart

import (
	"fmt"
	"io"
	"os"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// SectorSize is the only logical sector size handled.
const SectorSize = 512

// alignSectors keeps the partition end on a 1 MiB boundary - 1, the way
// partitioning tools lay out partitions, so the filesystem size is a whole
// number of MiB.
const alignSectors = 2048

// Result says what Grow did.
type Result struct {
	Grown       bool
	PartNum     int    // 1-based partition number
	Start       uint64 // first sector
	OldEnd      uint64 // last sector before
	NewEnd      uint64 // last sector after (== OldEnd when not grown)
	DiskSize    int64  // bytes
	NewSizeB    int64  // partition size in bytes after
	BackupLBA   uint64 // sector of the backup GPT header after
	MovedBackup bool   // the backup header was not at the disk end before
}

// File is what Grow needs from a disk: a regular image file or a block
// device opened read-write.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Seeker
	Stat() (os.FileInfo, error)
	Read([]byte) (int, error)
	Close() error
}

// Grow rewrites the GPT on f (diskSize bytes long) so that the partition
// named name ends at the last usable sector, and the backup GPT sits at the
// end of the disk. It returns without writing when nothing needs to change.
func Grow(f File, diskSize int64, name string) (Result, error) {
	res := Result{DiskSize: diskSize}
	t, err := gpt.Read(f, SectorSize, SectorSize)
	if err != nil {
		return res, fmt.Errorf("read GPT: %w", err)
	}
	var target *gpt.Partition
	var lastEnd uint64
	for _, p := range t.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		if p.Name == name {
			if target != nil {
				return res, fmt.Errorf("two partitions named %q", name)
			}
			target = p
		}
		if p.End > lastEnd {
			lastEnd = p.End
		}
	}
	if target == nil {
		return res, fmt.Errorf("no partition named %q in the GPT", name)
	}
	res.PartNum, res.Start, res.OldEnd, res.NewEnd = target.Index, target.Start, target.End, target.End
	res.NewSizeB = int64(target.End-target.Start+1) * SectorSize
	if target.End != lastEnd {
		return res, fmt.Errorf("partition %q (sectors %d-%d) is not the last on the disk (last sector used %d): cannot grow", name, target.Start, target.End, lastEnd)
	}

	oldBackup := t.TotalSize()/SectorSize - 1 // sector of the backup header now
	t.Resize(uint64(diskSize))
	res.BackupLBA = t.TotalSize()/SectorSize - 1
	res.MovedBackup = oldBackup != res.BackupLBA

	newEnd := t.LastDataSector()
	// Align the end down so that (end+1) is a multiple of 1 MiB.
	if aligned := (newEnd+1)/alignSectors*alignSectors - 1; aligned > target.Start {
		newEnd = aligned
	}
	if newEnd < target.End {
		// The disk is smaller than the table says, or already grown and
		// aligned differently: never shrink.
		newEnd = target.End
	}
	if newEnd == target.End && !res.MovedBackup {
		return res, nil
	}
	target.End = newEnd
	target.Size = (newEnd - target.Start + 1) * SectorSize
	if err := t.Write(f, diskSize); err != nil {
		return res, fmt.Errorf("write GPT: %w", err)
	}
	res.Grown = newEnd != res.OldEnd
	res.NewEnd = newEnd
	res.NewSizeB = int64(target.Size)
	return res, nil
}

// GrowDevice grows partition name on the disk device at diskPath to the
// end of the disk and, when diskPath is a block device, tells the kernel
// the new size.
func GrowDevice(diskPath, name string) (Result, error) {
	f, err := os.OpenFile(diskPath, os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("open %s: %w", diskPath, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Result{}, fmt.Errorf("size of %s: %w", diskPath, err)
	}
	res, err := Grow(f, size, name)
	if err != nil {
		return res, fmt.Errorf("grow %q on %s: %w", name, diskPath, err)
	}
	if !res.Grown {
		return res, nil
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("sync %s: %w", diskPath, err)
	}
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeDevice == 0 {
		return res, nil // an image file: no kernel partition table to update
	}
	if err := kernelResize(f, res); err != nil {
		return res, fmt.Errorf("tell the kernel about %s partition %d: %w", diskPath, res.PartNum, err)
	}
	return res, nil
}
