// Package randomseed carries entropy across boots in a seed file on the
// state partition, the way seedrng and systemd-random-seed do, so the
// kernel's CRNG is ready right after stage 1 instead of after the jitter
// entropy collection the first getrandom(2) or /dev/urandom read triggers
// (about a second under qemu without a hardware RNG, and on boards without
// one).
//
// Load reads the seed, removes it (so a crash can never make the same
// seed credited twice), credits it to the kernel with RNDADDENTROPY, and
// writes a fresh seed when the CRNG is ready. Save writes a fresh seed
// once the CRNG is ready, blocking until it is; stage 2 runs it in the
// background so the first boot, which has no seed, leaves one for the
// next.
//
// Limits: the seed is credited in full (256 bits), which trusts the state
// partition not to have been read by an attacker; a node imaged from a
// disk copy that carried a seed starts from the same pool (mixing keeps
// the outputs distinct once other entropy arrives, as with seedrng).
package randomseed

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Size of the seed in bytes.
const Size = 32

// Kernel is the entropy pool's interface, injected for tests.
type Kernel interface {
	// AddEntropy mixes b in and credits bits.
	AddEntropy(b []byte, bits int) error
	// Read fills b; when block is false it fails if the CRNG is not ready.
	Read(b []byte, block bool) error
}

// Load credits the seed at path, if any, and replaces it. It reports
// whether a seed was credited.
func Load(path string, k Kernel) (bool, error) {
	seed, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("random seed: %w", err)
	}
	// Remove before crediting: never credit the same seed twice.
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("random seed: %w", err)
	}
	syncDir(filepath.Dir(path))
	credited := false
	if len(seed) >= Size {
		// Hash so that a seed file written by anything else still
		// gives well-mixed bytes; credit what the file is worth.
		sum := sha256.Sum256(seed)
		if err := k.AddEntropy(sum[:], 8*Size); err != nil {
			return false, fmt.Errorf("random seed: credit: %w", err)
		}
		credited = true
	}
	if err := save(path, k, false); err != nil && credited {
		return credited, err
	}
	return credited, nil
}

// Save writes a fresh seed, waiting for the CRNG to be ready.
func Save(path string, k Kernel) error { return save(path, k, true) }

func save(path string, k Kernel, block bool) error {
	b := make([]byte, Size)
	if err := k.Read(b, block); err != nil {
		return fmt.Errorf("random seed: read: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("random seed: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("random seed: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("random seed: write %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Warm starts the kernel's CRNG initialization in the background: a
// blocking read makes the kernel collect timer jitter until the CRNG is
// ready, which then overlaps with boot work instead of stalling the first
// user of randomness (k3s, sshd's first host keys). It returns at once.
//
// The kernel collects the jitter in the waiting thread, busy, so the read
// runs on a thread of its own at the lowest priority (nice 19):
// at the default priority it took half of a one-CPU machine from the boot
// until the CRNG was ready. Anyone else who blocks on the CRNG collects
// jitter in their own thread, at their own priority.
func Warm(k Kernel) {
	go func() {
		// Never unlocked: the thread ends with the goroutine rather than
		// go back to the runtime at nice 19.
		runtime.LockOSThread()
		lowest()
		var b [1]byte
		k.Read(b[:], true)
	}()
}
