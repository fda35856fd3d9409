package verity

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SaltSize is the size of the random salt Build picks (veritysetup's
// default for sha256).
const SaltSize = 32

// Build writes the root partition image out: the file data (a squashfs)
// padded with zeros to whole blocks, then its hash tree, and returns the
// parameters with a random salt. out is written to a temporary file next
// to it and renamed, so a failed build never leaves half an image.
func Build(data, out string) (Params, error) {
	salt := make([]byte, SaltSize)
	if _, err := rand.Read(salt); err != nil {
		return Params{}, fmt.Errorf("verity salt: %w", err)
	}
	in, err := os.Open(data)
	if err != nil {
		return Params{}, fmt.Errorf("verity: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp-")
	if err != nil {
		return Params{}, fmt.Errorf("verity: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	p, err := Write(w, in, salt)
	if err == nil {
		err = w.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return Params{}, fmt.Errorf("verity image %s from %s: %w", out, data, err)
	}
	return p, nil
}

// Write copies data to w padded with zeros to whole blocks, then writes
// the hash tree (HashOffset is the padded data size) and returns the
// parameters. The tree is the one `veritysetup format --no-superblock`
// writes (format 1: each hash is sha256(salt || block); levels from the
// top one down, each padded to whole blocks; the root hash is that of the
// single top block), which the package's test checks byte for byte.
//
// Written here rather than by running veritysetup: it is a few dozen
// lines over crypto/sha256, needs no cgo and no cryptsetup on the build
// host, and works for any target arch from any host. The leaf hashes are
// kept in memory: 32 bytes per 4 KiB block (8 MiB for a 1 GiB root).
func Write(w io.Writer, data io.Reader, salt []byte) (Params, error) {
	if len(salt) > 256 {
		return Params{}, fmt.Errorf("verity salt: %d bytes, at most 256", len(salt))
	}
	var (
		leaves []byte
		blocks uint64
		block  = make([]byte, BlockSize)
	)
	for {
		n, err := io.ReadFull(data, block)
		if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return Params{}, fmt.Errorf("verity: read data: %w", err)
		}
		clear(block[n:]) // pad the last block
		if _, err := w.Write(block); err != nil {
			return Params{}, fmt.Errorf("verity: write data: %w", err)
		}
		leaves = append(leaves, saltedHash(salt, block)...)
		blocks++
		if n < BlockSize {
			break
		}
	}
	if blocks == 0 {
		return Params{}, errors.New("verity: no data")
	}

	// levels[0] are the hash blocks over the data, the last the top one;
	// one data block needs no tree at all (its hash is the root hash).
	var levels [][]byte
	for hashes := leaves; len(hashes) > sha256.Size; {
		level := padBlocks(hashes)
		levels = append(levels, level)
		hashes = nil
		for off := 0; off < len(level); off += BlockSize {
			hashes = append(hashes, saltedHash(salt, level[off:off+BlockSize])...)
		}
	}
	root := leaves
	if len(levels) > 0 {
		top := levels[len(levels)-1]
		root = saltedHash(salt, top)
	}
	for i := len(levels) - 1; i >= 0; i-- {
		if _, err := w.Write(levels[i]); err != nil {
			return Params{}, fmt.Errorf("verity: write hash tree: %w", err)
		}
	}
	return Params{
		RootHash:   hex.EncodeToString(root),
		Salt:       hex.EncodeToString(salt),
		DataBlocks: blocks,
		HashOffset: blocks * BlockSize,
	}, nil
}

// TreeSize is the size in bytes of the hash tree over dataBlocks blocks.
func TreeSize(dataBlocks uint64) uint64 {
	const perBlock = BlockSize / sha256.Size
	var size uint64
	for n := dataBlocks; n > 1; {
		n = (n + perBlock - 1) / perBlock
		size += n * BlockSize
	}
	return size
}

func saltedHash(salt, block []byte) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(block)
	return h.Sum(nil)
}

// padBlocks returns b zero-padded to whole blocks.
func padBlocks(b []byte) []byte {
	if r := len(b) % BlockSize; r != 0 {
		b = append(b, make([]byte, BlockSize-r)...)
	}
	return b
}
