package growpart

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Ext4Super is the part of the ext4 superblock that resizing needs.
type Ext4Super struct {
	BlockSize int64
	Blocks    uint64
}

// ReadExt4Super reads the superblock at byte 1024 of r.
func ReadExt4Super(r io.ReaderAt) (Ext4Super, error) {
	b := make([]byte, 1024)
	if _, err := r.ReadAt(b, 1024); err != nil {
		return Ext4Super{}, fmt.Errorf("read ext4 superblock: %w", err)
	}
	if m := binary.LittleEndian.Uint16(b[0x38:]); m != 0xEF53 {
		return Ext4Super{}, fmt.Errorf("not ext2/3/4: magic %#x", m)
	}
	logBS := binary.LittleEndian.Uint32(b[0x18:])
	if logBS > 6 {
		return Ext4Super{}, fmt.Errorf("implausible ext4 block size 2^(10+%d)", logBS)
	}
	s := Ext4Super{BlockSize: 1024 << logBS, Blocks: uint64(binary.LittleEndian.Uint32(b[0x04:]))}
	const incompat64bit = 0x80
	if binary.LittleEndian.Uint32(b[0x60:])&incompat64bit != 0 {
		s.Blocks |= uint64(binary.LittleEndian.Uint32(b[0x150:])) << 32
	}
	return s, nil
}

// Ext4Target returns the block count ext4 on a device of devSize bytes
// should have, and whether that is more than it has now.
func Ext4Target(s Ext4Super, devSize int64) (uint64, bool) {
	want := uint64(devSize / s.BlockSize)
	return want, want > s.Blocks
}

// ResizeExt4 grows the ext4 filesystem on device dev, mounted at
// mountPoint, to fill the device. It reads the superblock through dev
// and the device size by seeking it; it returns the old and new block
// counts (equal when nothing was done).
func ResizeExt4(dev, mountPoint string) (from, to uint64, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", dev, err)
	}
	defer f.Close()
	s, err := ReadExt4Super(f)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", dev, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	want, grow := Ext4Target(s, size)
	if !grow {
		return s.Blocks, s.Blocks, nil
	}
	if err := resizeFS(mountPoint, want); err != nil {
		return s.Blocks, s.Blocks, fmt.Errorf("online resize of %s on %s from %d to %d blocks: %w", dev, mountPoint, s.Blocks, want, err)
	}
	return s.Blocks, want, nil
}
