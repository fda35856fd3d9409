package diskimage

import (
	"encoding/binary"
	"fmt"
	"io"
)

type readWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// fixFAT32 repairs two things go-diskfs v1.9.4's FAT32 writer gets wrong,
// so that `fsck.fat -n` passes and strict firmware reads the ESP:
//
//   - a directory directly under the root gets a ".." entry pointing at the
//     root directory's cluster; the FAT specification wants cluster 0;
//   - the FSInfo free-cluster count is left "unknown" (0xFFFFFFFF), which
//     fsck.fat reports; it is set to the real count.
//
// f is the disk image, off the byte offset of the FAT32 volume. Only the
// root directory's first cluster is scanned (the ESP's root holds a
// handful of entries).
func fixFAT32(f readWriterAt, off int64) error {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return fmt.Errorf("read FAT32 boot sector: %w", err)
	}
	bytesPerSector := int64(binary.LittleEndian.Uint16(bs[11:13]))
	sectorsPerCluster := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	numFATs := int64(bs[16])
	totalSectors := int64(binary.LittleEndian.Uint32(bs[32:36]))
	fatSectors := int64(binary.LittleEndian.Uint32(bs[36:40]))
	rootCluster := binary.LittleEndian.Uint32(bs[44:48])
	fsInfoSector := int64(binary.LittleEndian.Uint16(bs[48:50]))
	if bytesPerSector == 0 || sectorsPerCluster == 0 || fatSectors == 0 {
		return fmt.Errorf("FAT32 boot sector: not a FAT32 volume")
	}
	clusterSize := bytesPerSector * sectorsPerCluster
	dataStart := off + (reserved+numFATs*fatSectors)*bytesPerSector
	clusterOff := func(c uint32) int64 { return dataStart + int64(c-2)*clusterSize }

	root := make([]byte, clusterSize)
	if _, err := f.ReadAt(root, clusterOff(rootCluster)); err != nil {
		return fmt.Errorf("read FAT32 root directory: %w", err)
	}
	for i := 0; i+32 <= len(root); i += 32 {
		e := root[i : i+32]
		if e[0] == 0 {
			break // end of directory
		}
		attr := e[11]
		if e[0] == 0xE5 || attr == 0x0F || attr&0x10 == 0 || e[0] == '.' {
			continue // deleted, long-name part, not a directory, or dot entry
		}
		first := uint32(binary.LittleEndian.Uint16(e[20:22]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:28]))
		dotdot := make([]byte, 32)
		at := clusterOff(first) + 32
		if _, err := f.ReadAt(dotdot, at); err != nil {
			return fmt.Errorf("read FAT32 directory: %w", err)
		}
		if string(dotdot[0:11]) != "..         " {
			continue
		}
		if uint32(binary.LittleEndian.Uint16(dotdot[20:22]))<<16|uint32(binary.LittleEndian.Uint16(dotdot[26:28])) != rootCluster {
			continue
		}
		binary.LittleEndian.PutUint16(dotdot[20:22], 0)
		binary.LittleEndian.PutUint16(dotdot[26:28], 0)
		if _, err := f.WriteAt(dotdot, at); err != nil {
			return fmt.Errorf("fix FAT32 '..' entry: %w", err)
		}
	}

	// Count free clusters in the first FAT.
	clusters := (totalSectors-reserved-numFATs*fatSectors)/sectorsPerCluster + 2
	fat := make([]byte, fatSectors*bytesPerSector)
	if _, err := f.ReadAt(fat, off+reserved*bytesPerSector); err != nil {
		return fmt.Errorf("read FAT: %w", err)
	}
	var free uint32
	nextFree := uint32(0xFFFFFFFF)
	for c := int64(2); c < clusters && 4*c+4 <= int64(len(fat)); c++ {
		if binary.LittleEndian.Uint32(fat[4*c:])&0x0FFFFFFF == 0 {
			free++
			if nextFree == 0xFFFFFFFF {
				nextFree = uint32(c)
			}
		}
	}
	for _, sector := range []int64{fsInfoSector, fsInfoSector + 6} { // primary and backup
		info := make([]byte, 512)
		at := off + sector*bytesPerSector
		if _, err := f.ReadAt(info, at); err != nil {
			return fmt.Errorf("read FSInfo: %w", err)
		}
		if binary.LittleEndian.Uint32(info[0:4]) != 0x41615252 {
			continue // no FSInfo there
		}
		binary.LittleEndian.PutUint32(info[488:492], free)
		binary.LittleEndian.PutUint32(info[492:496], nextFree)
		if _, err := f.WriteAt(info, at); err != nil {
			return fmt.Errorf("write FSInfo: %w", err)
		}
	}
	return nil
}
