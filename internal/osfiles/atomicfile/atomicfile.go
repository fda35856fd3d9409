// Package atomicfile replaces a file so that a reader (or a power cut) sees
// either the old content or the new one, never a mix: the bytes go to a
// temporary file in the same directory, which gets its mode and owner, is
// fsynced, renamed over the target, and the directory is fsynced.
//
// Limits: the target's directory must be on a filesystem that supports
// rename(2) within a directory (every Linux filesystem Kestrel writes to);
// symlinks in the target path are followed like any open(2); extended
// attributes and ACLs of a replaced file are not carried over.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// NoChown, as uid or gid, leaves the owner as the process created it.
const NoChown = -1

// Write atomically replaces path with data, mode perm (setuid, setgid and
// sticky bits included when set in perm), owned by uid:gid (NoChown to keep
// the creating process's ids). Missing parent directories are created 0755
// and root-owned.
func Write(path string, data []byte, perm os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer r.Close()
	return WriteIn(r, filepath.Base(path), data, perm, uid, gid)
}

// UnixMode converts the permission bits of a Unix mode (as written in octal,
// 04755 and so on) into an os.FileMode, carrying setuid, setgid and sticky.
func UnixMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
