package diskimage

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

type readWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// fixFAT32 repairs what go-diskfs v1.9.4's FAT32 writer gets wrong or
// leaves to chance, so that `fsck.fat -n` passes, strict firmware reads
// the ESP and the same inputs give the same bytes. Each fix names the
// upstream code or thread it works around:
//
//   - a directory directly under the root gets a ".." entry pointing at the
//     root directory's cluster; the FAT specification wants cluster 0, and
//     fsck.fat says "Invalid '..' entry". Upstream fixed this once
//     (https://github.com/diskfs/go-diskfs/pull/70), but v1.9.4's shared
//     FAT code writes the parent's cluster again (filesystem/fat12/fat12.go,
//     the new directory's ".." gets clusterLocation: parentCluster);
//   - every directory entry carries the build host's clock
//     (util/timestamp.GetTime: time.Now unless the process environment has
//     SOURCE_DATE_EPOCH, https://github.com/diskfs/go-diskfs/pull/317; a
//     library does not set process-wide variables); they are set to stamp
//     (clamped to 1980, FAT's epoch; dates out of range also break GRUB,
//     https://github.com/diskfs/go-diskfs/issues/212);
//   - the FSInfo free-cluster count is left "unknown" (0xFFFFFFFF:
//     filesystem/fat32/fat32.go, Create, and nothing updates it), which
//     fsck.fat reports; it is set to the real count;
//   - a reproducible volume has serial number 0000-0000 (pull 317 again),
//     which is what /dev/disk/by-uuid shows; it is set to volID.
//
// What cannot be repaired afterwards, a FAT too small for its clusters at
// some sizes (https://github.com/diskfs/go-diskfs/issues/418), is avoided
// by refusing those sizes: CheckESPSize.
//
// f is the disk image, off the byte offset of the FAT32 volume.
func fixFAT32(f readWriterAt, off int64, stamp time.Time, volID uint32) error {
	v, err := readFATVolume(f, off)
	if err != nil {
		return err
	}
	if err := v.writeVolumeID(volID); err != nil {
		return err
	}
	if err := v.fixDir(v.rootCluster, fatTimestamp(stamp), 0); err != nil {
		return err
	}
	return v.writeFreeCount()
}

// fatVolume is the geometry of a FAT32 volume and its first FAT.
type fatVolume struct {
	f                             readWriterAt
	off                           int64
	bytesPerSector, clusterSize   int64
	reserved, fatSectors, numFATs int64
	totalSectors, fsInfoSector    int64
	rootCluster                   uint32
	fat                           []byte // the first FAT, as read
}

func readFATVolume(f readWriterAt, off int64) (*fatVolume, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return nil, fmt.Errorf("read FAT32 boot sector: %w", err)
	}
	v := &fatVolume{
		f: f, off: off,
		bytesPerSector: int64(binary.LittleEndian.Uint16(bs[11:13])),
		reserved:       int64(binary.LittleEndian.Uint16(bs[14:16])),
		numFATs:        int64(bs[16]),
		totalSectors:   int64(binary.LittleEndian.Uint32(bs[32:36])),
		fatSectors:     int64(binary.LittleEndian.Uint32(bs[36:40])),
		rootCluster:    binary.LittleEndian.Uint32(bs[44:48]),
		fsInfoSector:   int64(binary.LittleEndian.Uint16(bs[48:50])),
	}
	v.clusterSize = v.bytesPerSector * int64(bs[13])
	if v.clusterSize == 0 || v.fatSectors == 0 || string(bs[82:87]) != "FAT32" {
		return nil, fmt.Errorf("FAT32 boot sector: not a FAT32 volume")
	}
	v.fat = make([]byte, v.fatSectors*v.bytesPerSector)
	if _, err := f.ReadAt(v.fat, off+v.reserved*v.bytesPerSector); err != nil {
		return nil, fmt.Errorf("read FAT: %w", err)
	}
	return v, nil
}

func (v *fatVolume) clusterOffset(c uint32) int64 {
	dataStart := v.off + (v.reserved+v.numFATs*v.fatSectors)*v.bytesPerSector
	return dataStart + int64(c-2)*v.clusterSize
}

// chain returns the clusters of the chain starting at first.
func (v *fatVolume) chain(first uint32) ([]uint32, error) {
	var out []uint32
	for c := first; c >= 2 && c < 0x0FFFFFF8; {
		if int64(len(out)) > int64(len(v.fat))/4 || int64(c)*4+4 > int64(len(v.fat)) {
			return nil, fmt.Errorf("FAT chain from cluster %d is corrupt", first)
		}
		out = append(out, c)
		c = binary.LittleEndian.Uint32(v.fat[4*c:]) & 0x0FFFFFFF
	}
	return out, nil
}

// fixDir rewrites the timestamps of every entry of the directory at
// cluster first (depth 0 is the root), fixes a root child's "..", and
// recurses into subdirectories.
func (v *fatVolume) fixDir(first uint32, stamp [4]byte, depth int) error {
	if depth > 32 {
		return fmt.Errorf("FAT32 directories nested deeper than 32")
	}
	clusters, err := v.chain(first)
	if err != nil {
		return err
	}
	var subdirs []uint32
	for _, c := range clusters {
		buf := make([]byte, v.clusterSize)
		if _, err := v.f.ReadAt(buf, v.clusterOffset(c)); err != nil {
			return fmt.Errorf("read FAT32 directory: %w", err)
		}
		end := false
		for i := 0; i+32 <= len(buf); i += 32 {
			e := buf[i : i+32]
			if e[0] == 0 {
				end = true
				break
			}
			if e[0] == 0xE5 || e[11] == 0x0F {
				continue // deleted, or part of a long name
			}
			e[13] = 0                  // creation time, tenths
			copy(e[14:16], stamp[0:2]) // creation time
			copy(e[16:18], stamp[2:4]) // creation date
			copy(e[18:20], stamp[2:4]) // access date
			copy(e[22:24], stamp[0:2]) // write time
			copy(e[24:26], stamp[2:4]) // write date
			if e[11]&0x10 == 0 {
				continue
			}
			cl := uint32(binary.LittleEndian.Uint16(e[20:22]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:28]))
			switch string(e[0:11]) {
			case ".          ":
			case "..         ":
				if cl == v.rootCluster && depth == 1 {
					binary.LittleEndian.PutUint16(e[20:22], 0)
					binary.LittleEndian.PutUint16(e[26:28], 0)
				}
			default:
				subdirs = append(subdirs, cl)
			}
		}
		if _, err := v.f.WriteAt(buf, v.clusterOffset(c)); err != nil {
			return fmt.Errorf("write FAT32 directory: %w", err)
		}
		if end {
			break
		}
	}
	for _, sd := range subdirs {
		if err := v.fixDir(sd, stamp, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// writeVolumeID sets BS_VolID in the boot sector and its backup.
func (v *fatVolume) writeVolumeID(id uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], id)
	for _, sector := range []int64{0, 6} { // boot sector, backup
		if _, err := v.f.WriteAt(b[:], v.off+sector*v.bytesPerSector+67); err != nil {
			return fmt.Errorf("write FAT32 volume ID: %w", err)
		}
	}
	return nil
}

// writeFreeCount stores the number of free clusters and the first free
// one in the primary and backup FSInfo sectors.
func (v *fatVolume) writeFreeCount() error {
	clusters := (v.totalSectors-v.reserved-v.numFATs*v.fatSectors)/(v.clusterSize/v.bytesPerSector) + 2
	var free uint32
	nextFree := uint32(0xFFFFFFFF)
	for c := int64(2); c < clusters && 4*c+4 <= int64(len(v.fat)); c++ {
		if binary.LittleEndian.Uint32(v.fat[4*c:])&0x0FFFFFFF == 0 {
			free++
			if nextFree == 0xFFFFFFFF {
				nextFree = uint32(c)
			}
		}
	}
	for _, sector := range []int64{v.fsInfoSector, v.fsInfoSector + 6} { // primary, backup
		info := make([]byte, 512)
		at := v.off + sector*v.bytesPerSector
		if _, err := v.f.ReadAt(info, at); err != nil {
			return fmt.Errorf("read FSInfo: %w", err)
		}
		if binary.LittleEndian.Uint32(info[0:4]) != 0x41615252 {
			continue // no FSInfo there
		}
		binary.LittleEndian.PutUint32(info[488:492], free)
		binary.LittleEndian.PutUint32(info[492:496], nextFree)
		if _, err := v.f.WriteAt(info, at); err != nil {
			return fmt.Errorf("write FSInfo: %w", err)
		}
	}
	return nil
}

// fatTimestamp encodes t as FAT time (2-second resolution) and date, both
// little-endian, clamped to FAT's range 1980..2107.
func fatTimestamp(t time.Time) [4]byte {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	var b [4]byte
	binary.LittleEndian.PutUint16(b[0:2], uint16(t.Hour()<<11|t.Minute()<<5|t.Second()/2))
	binary.LittleEndian.PutUint16(b[2:4], uint16((t.Year()-1980)<<9|int(t.Month())<<5|t.Day()))
	return b
}
