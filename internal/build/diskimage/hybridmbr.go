package diskimage

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// MBR partition types and layout (the classic PC partition table in the
// first sector, entries of 16 bytes from byte 446).
const (
	mbrEntries    = 446
	mbrEntrySize  = 16
	mbrTypeFAT32  = 0x0c // FAT32 with LBA addressing
	mbrTypeGPT    = 0xee // GPT protective
	mbrActiveFlag = 0x80
)

// writeHybridMBR replaces the protective MBR go-diskfs wrote with a
// hybrid one: entry 1 is the ESP as a FAT32 partition (what the Raspberry
// Pi's boot ROM and firmware look for: they read no GPT), entry 2 the GPT
// protective partition from sector 1 up to the ESP. Linux still reads the
// GPT (a 0xEE entry starting at sector 1 is enough), and the node's
// growpart leaves such an MBR alone (go-diskfs rewrites only a purely
// protective one). Written by hand: go-diskfs writes either GPT or MBR,
// not both. CHS fields are left zero (LBA only, as the Pi reads them).
func writeHybridMBR(w io.WriterAt, espStart, espSectors uint64) error {
	if espStart+espSectors > 1<<32 {
		return fmt.Errorf("hybrid MBR: ESP ends beyond 2 TiB")
	}
	entries := make([]byte, 4*mbrEntrySize)
	fat := entries[0:mbrEntrySize]
	fat[0] = mbrActiveFlag
	fat[4] = mbrTypeFAT32
	binary.LittleEndian.PutUint32(fat[8:], uint32(espStart))
	binary.LittleEndian.PutUint32(fat[12:], uint32(espSectors))
	gpt := entries[mbrEntrySize : 2*mbrEntrySize]
	gpt[4] = mbrTypeGPT
	binary.LittleEndian.PutUint32(gpt[8:], 1)
	binary.LittleEndian.PutUint32(gpt[12:], uint32(espStart-1))
	if _, err := w.WriteAt(entries, mbrEntries); err != nil {
		return fmt.Errorf("hybrid MBR: %w", err)
	}
	return nil
}

// nextPowerOfTwo rounds n up to a power of two (qemu's SD card model
// takes only such sizes).
func nextPowerOfTwo(n int64) int64 {
	if n <= 1 {
		return 1
	}
	return 1 << (64 - bits.LeadingZeros64(uint64(n-1)))
}
