package dmverity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/verity"
)

// CheckChunk is how much Check reads at a time: large sequential reads
// keep the per-call cost small next to hashing.
const CheckChunk = 1 << 20

// CorruptError is the first block of a verity device that failed to read.
type CorruptError struct {
	Path  string
	Block int64 // index of the 4096-byte data block (byte offset / verity.BlockSize)
	Err   error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: data block %d (bytes %d-%d) fails verification: %v",
		e.Path, e.Block, e.Block*verity.BlockSize, (e.Block+1)*verity.BlockSize-1, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Check reads the whole device at path (a verity device, so every block's
// hash is checked against the tree) and returns how many bytes it read.
// A block that fails is reported as a *CorruptError naming the first bad
// block; ctx stops a check early (its error is returned).
//
// Stage 1 reads only the blocks it needs to start stage 2, so corruption
// elsewhere in the root would show only when that file is read: the
// caller runs Check in the background once the node is up, before it
// marks a new slot good.
//
// Reads bypass the page cache (O_DIRECT): every block goes through the
// verity target even when its page is cached, and a check of the whole
// root does not push the node's working set out of memory.
func Check(ctx context.Context, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return 0, fmt.Errorf("verity check: %w", err)
	}
	defer f.Close()
	// O_DIRECT wants an aligned buffer: an anonymous mapping is page-aligned.
	buf, err := unix.Mmap(-1, 0, CheckChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("verity check: buffer: %w", err)
	}
	defer unix.Munmap(buf)

	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, err := f.ReadAt(buf, off)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return off, nil
		}
		if err != nil {
			// A short read stops at the bad block or before it: look
			// for the first bad block from here, one block at a time.
			return off, firstBad(f, path, buf[:verity.BlockSize], off, err)
		}
	}
}

// firstBad reads block by block from off until a block fails, within the
// chunk where the large read failed.
func firstBad(f *os.File, path string, block []byte, off int64, chunkErr error) error {
	for end := off + CheckChunk; off < end; off += verity.BlockSize {
		if _, err := f.ReadAt(block, off); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			var pe *os.PathError
			if errors.As(err, &pe) { // the path is in CorruptError already
				err = pe.Err
			}
			return &CorruptError{Path: path, Block: off / verity.BlockSize, Err: err}
		}
	}
	// Every block read alone: the chunk's error was not the data's.
	return fmt.Errorf("verity check: %s at byte %d: %w", path, off, chunkErr)
}

// CheckDevice verifies a root that is not mounted, such as the other
// slot's: it maps data through dm-verity under name with p, reads it all
// (Check) and removes the mapping again, whatever the outcome.
func CheckDevice(ctx context.Context, control, devDir, name string, p verity.Params, data string) (int64, error) {
	d, err := Open(control, devDir, name, p, data)
	if err != nil {
		return 0, err
	}
	n, err := Check(ctx, d.Path)
	if rerr := Remove(control, name); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return n, err
}
