// Package verity describes a dm-verity protected root as the builder writes
// it and stage 1 opens it: the parameters, how they travel on the kernel
// command line of a slot's boot entry, and the device-mapper table they make.
//
// The on-disk format is the one veritysetup(8) writes with --no-superblock:
// the squashfs padded to whole 4096-byte blocks, then the hash tree
// (format 1, sha256, 4096-byte data and hash blocks) starting at HashOffset
// in the same partition. No superblock: every parameter comes from the boot
// entry, so the partition alone cannot vouch for itself.
//
// Limits: one algorithm (sha256) and one block size (4096); no forward error
// correction; the parameters are only as trustworthy as the boot entry that
// carries them (without Secure Boot, someone who can write the ESP can
// change both the root and its hash).
package verity

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// BlockSize is the data and hash block size.
const BlockSize = 4096

// Algorithm is the hash algorithm of the tree.
const Algorithm = "sha256"

// Kernel command-line keys carrying the parameters.
const (
	CmdlineRootHash   = "kestrel.verity.roothash"
	CmdlineSalt       = "kestrel.verity.salt"
	CmdlineDataBlocks = "kestrel.verity.datablocks"
	CmdlineHashOffset = "kestrel.verity.hashoffset"
)

// Params are one root's verity parameters.
type Params struct {
	RootHash   string `json:"root_hash"`   // hex sha256 of the top hash block
	Salt       string `json:"salt"`        // hex; may be empty ("-" in the table)
	DataBlocks uint64 `json:"data_blocks"` // 4096-byte blocks of the squashfs (padded)
	HashOffset uint64 `json:"hash_offset"` // byte offset of the tree in the partition
}

// Validate checks the parameters' shape (not the data).
func (p Params) Validate() error {
	if b, err := hex.DecodeString(p.RootHash); err != nil || len(b) != 32 {
		return fmt.Errorf("verity root hash %q: want 64 hex digits", p.RootHash)
	}
	if _, err := hex.DecodeString(p.Salt); err != nil || len(p.Salt) > 512 {
		return fmt.Errorf("verity salt %q: want at most 256 bytes in hex", p.Salt)
	}
	if p.DataBlocks == 0 {
		return fmt.Errorf("verity: no data blocks")
	}
	if p.HashOffset%BlockSize != 0 || p.HashOffset < p.DataBlocks*BlockSize {
		return fmt.Errorf("verity hash offset %d: want a multiple of %d at or after the data's end (%d)", p.HashOffset, BlockSize, p.DataBlocks*BlockSize)
	}
	return nil
}

// CmdlineOptions are the kernel command-line words for a boot entry.
func (p Params) CmdlineOptions() []string {
	return []string{
		CmdlineRootHash + "=" + p.RootHash,
		CmdlineSalt + "=" + p.Salt,
		CmdlineDataBlocks + "=" + strconv.FormatUint(p.DataBlocks, 10),
		CmdlineHashOffset + "=" + strconv.FormatUint(p.HashOffset, 10),
	}
}

// FromCmdline reads the parameters from kernel command-line values (get
// returns a key's value and whether it is present). ok is false when no
// verity key is present at all (an image built without verity); a partial
// or malformed set is an error, never a silent unverified boot.
func FromCmdline(get func(key string) (string, bool)) (p Params, ok bool, err error) {
	root, hasRoot := get(CmdlineRootHash)
	salt, hasSalt := get(CmdlineSalt)
	blocks, hasBlocks := get(CmdlineDataBlocks)
	off, hasOff := get(CmdlineHashOffset)
	if !hasRoot && !hasSalt && !hasBlocks && !hasOff {
		return Params{}, false, nil
	}
	if !hasRoot || !hasBlocks || !hasOff {
		return Params{}, true, fmt.Errorf("kernel command line: %s, %s and %s must all be given", CmdlineRootHash, CmdlineDataBlocks, CmdlineHashOffset)
	}
	p = Params{RootHash: root, Salt: salt}
	if p.DataBlocks, err = strconv.ParseUint(blocks, 10, 64); err != nil {
		return Params{}, true, fmt.Errorf("kernel command line: %s=%q: %w", CmdlineDataBlocks, blocks, err)
	}
	if p.HashOffset, err = strconv.ParseUint(off, 10, 64); err != nil {
		return Params{}, true, fmt.Errorf("kernel command line: %s=%q: %w", CmdlineHashOffset, off, err)
	}
	if err := p.Validate(); err != nil {
		return Params{}, true, fmt.Errorf("kernel command line: %w", err)
	}
	return p, true, nil
}

// Table is the device-mapper table line for dev (a block device path or
// major:minor) holding both data and tree, in 512-byte sectors as
// device-mapper counts them.
func (p Params) Table(dev string) (start, sectors uint64, target, params string) {
	salt := p.Salt
	if salt == "" {
		salt = "-"
	}
	params = fmt.Sprintf("1 %s %s %d %d %d %d %s %s %s",
		dev, dev, BlockSize, BlockSize, p.DataBlocks, p.HashOffset/BlockSize, Algorithm, p.RootHash, salt)
	return 0, p.DataBlocks * (BlockSize / 512), "verity", params
}
