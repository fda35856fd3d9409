package esp

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Written here rather than taken from go-diskfs: its fat32 package reads
// FAT32 only (the ESP may be FAT16 on a small disk) and does not expose
// the state byte, and all that is needed is one byte of the boot sector.

// FAT boot sector offsets (Microsoft's FAT specification, and Linux's
// struct fat_boot_sector, which names BS_Reserved1 "state").
const (
	offFATSz16    = 22   // BPB_FATSz16: 0 on FAT32
	offState16    = 37   // BS_Reserved1 on FAT12/16
	offState32    = 65   // BS_Reserved1 on FAT32
	offSignature  = 510  // 0x55 0xAA
	fatStateDirty = 0x01 // Linux's FAT_STATE_DIRTY
)

// Dirty reports whether the FAT on dev carries Linux's dirty flag: the
// kernel's vfat driver sets it when it mounts the filesystem read-write
// and clears it when it unmounts (or remounts read-only) cleanly, so a
// set flag means the machine stopped with the ESP mounted read-write: a
// power cut, a crash. fsck.fat clears it when it checks.
//
// Limits: the flag is only as good as the last writer's manners: a FAT
// written by another OS, or by tools without a mount, is reported clean
// whatever its state (the images Kestrel writes are consistent when
// written).
func Dirty(dev string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, fmt.Errorf("FAT boot sector: %w", err)
	}
	defer f.Close()
	var bs [512]byte
	if _, err := io.ReadFull(f, bs[:]); err != nil {
		return false, fmt.Errorf("FAT boot sector of %s: %w", dev, err)
	}
	if bs[offSignature] != 0x55 || bs[offSignature+1] != 0xAA {
		return false, fmt.Errorf("FAT boot sector of %s: no 0x55AA signature", dev)
	}
	state := bs[offState16]
	if binary.LittleEndian.Uint16(bs[offFATSz16:]) == 0 {
		state = bs[offState32]
	}
	return state&fatStateDirty != 0, nil
}
