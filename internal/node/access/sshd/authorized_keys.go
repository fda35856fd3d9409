package sshd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxAuthorizedKeys is the most of an authorized_keys file that is read:
// thousands of keys, and a bound on what a user's file costs the server.
const maxAuthorizedKeys = 1 << 20

// readAuthorizedKeys reads home/.ssh/authorized_keys for the user uid as
// OpenSSH with StrictModes does: the home, ~/.ssh and the file must be
// owned by the user or root and not group or world writable, and the file
// must be a regular file of at most 1 MiB. Every step is opened relative
// to the last with O_NOFOLLOW, and the file with O_NONBLOCK, so a user's
// symlink, FIFO or device (/dev/zero) neither redirects nor stalls the
// server; checks are made with fstat on what was opened. The home itself
// is not opened with O_NOFOLLOW: its parent is root's (package users).
func readAuthorizedKeys(home string, uid int) ([]byte, error) {
	fd, err := unix.Open(home, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: home, Err: err}
	}
	defer func() { unix.Close(fd) }()
	if err := checkOwner(fd, home, uid, unix.S_IFDIR); err != nil {
		return nil, err
	}
	path := home
	for _, step := range []struct {
		name  string
		flags int
		typ   uint32
	}{
		{".ssh", unix.O_DIRECTORY, unix.S_IFDIR},
		{"authorized_keys", unix.O_NONBLOCK | unix.O_NOCTTY, unix.S_IFREG},
	} {
		path = filepath.Join(path, step.name)
		next, err := unix.Openat(fd, step.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|step.flags, 0)
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink: refused", path)
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		unix.Close(fd)
		fd = next
		if err := checkOwner(fd, path, uid, step.typ); err != nil {
			return nil, err
		}
	}
	f := os.NewFile(uintptr(fd), path)
	fd = -1
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAuthorizedKeys+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxAuthorizedKeys {
		return nil, fmt.Errorf("%s is larger than %d bytes: refused", path, maxAuthorizedKeys)
	}
	return data, nil
}

// checkOwner is StrictModes' test of one open file: its type, owner
// (uid or root) and no write permission for group or others.
func checkOwner(fd int, path string, uid int, typ uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != typ {
		return fmt.Errorf("%s: not a %s: refused", path, map[uint32]string{unix.S_IFDIR: "directory", unix.S_IFREG: "regular file"}[typ])
	}
	if st.Uid != 0 && int(st.Uid) != uid {
		return fmt.Errorf("%s: owned by uid %d, not by the user (%d) or root: refused", path, st.Uid, uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%s: mode %#o is group or world writable: refused", path, st.Mode&0o777)
	}
	return nil
}
