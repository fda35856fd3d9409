package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
)

// WriteIn is Write for a file inside dir, an os.Root: every path
// component of name is resolved inside dir, so a symlink planted by
// whoever owns dir cannot redirect the write (or the chown) outside it.
// This is the variant to use for trees a non-root user can write to (a
// home directory). Missing parent directories inside dir are created 0755
// and owned by the creating process.
//
// A regular file that already holds data with this mode and owner is left
// as it is: no write, no fsync. Most of what boot writes (accounts, keys,
// the last good config) is the same on every boot, and each replacement
// cost a journal commit on the state partition (tens of milliseconds under
// qemu's TCG, and flash wear on an SD card).
func WriteIn(dir *os.Root, name string, data []byte, perm os.FileMode, uid, gid int) error {
	where := filepath.Join(dir.Name(), name)
	if unchanged(dir, name, data, perm, uid, gid) {
		return nil
	}
	if sub := filepath.Dir(name); sub != "." {
		if err := dir.MkdirAll(sub, 0o755); err != nil {
			return fmt.Errorf("create directory %s: %w", filepath.Dir(where), err)
		}
	}
	// The temporary name needs to be unguessable by whoever may write to
	// dir, not cryptographic: math/rand/v2's generator is seeded by the
	// runtime and never blocks, where crypto/rand waits for the kernel's
	// CRNG, which on a first boot without a seed or RDRAND is not ready
	// until well into stage 2. O_EXCL makes a name that exists (planted,
	// or left by a crash) fail; another name is tried.
	var tmpName string
	var tmp *os.File
	var err error
	for try := 0; try < 4; try++ {
		tmpName = filepath.Join(filepath.Dir(name), fmt.Sprintf(".%s.tmp-%016x", filepath.Base(name), rand.Uint64()))
		// O_EXCL: the temporary name is new, never an existing file or link.
		tmp, err = dir.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", where, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			dir.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", where, err)
	}
	// fchown and fchmod act on the open file, never on a path.
	if uid != NoChown || gid != NoChown {
		if err := tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("chown %s to %d:%d: %w", where, uid, gid, err)
		}
	}
	// Chmod after chown: chown clears the setuid and setgid bits.
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s to %v: %w", where, perm, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", where, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", where, err)
	}
	// rename(2) replaces a symlink at name, it does not follow it.
	if err := dir.Rename(tmpName, name); err != nil {
		return fmt.Errorf("rename %s over %s: %w", tmpName, where, err)
	}
	done = true
	d, err := dir.Open(filepath.Dir(name))
	if err != nil {
		return fmt.Errorf("open directory %s: %w", filepath.Dir(where), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", filepath.Dir(where), err)
	}
	return nil
}

// modeBits are the mode bits WriteIn sets.
const modeBits = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

// unchanged reports whether name in dir is a regular file (not a link)
// holding exactly data, with mode perm and owned by uid:gid (NoChown: by
// this process's effective ids, as a new file would be).
func unchanged(dir *os.Root, name string, data []byte, perm os.FileMode, uid, gid int) bool {
	if uid == NoChown {
		uid = os.Geteuid()
	}
	if gid == NoChown {
		gid = os.Getegid()
	}
	f, err := dir.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&modeBits != perm&modeBits || fi.Size() != int64(len(data)) {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != uid || int(st.Gid) != gid {
		return false
	}
	have, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	return err == nil && bytes.Equal(have, data)
}
