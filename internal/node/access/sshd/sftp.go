package sshd

import (
	"fmt"
	"io"

	"github.com/pkg/sftp"
)

// ServeSFTP answers SFTP (version 3 with OpenSSH's posix-rename, statvfs
// and hardlink extensions; not fsync) on in and out until the client closes in:
// the body of `kestrel sftp-server`, the "sftp" subsystem. The protocol is
// github.com/pkg/sftp's server, a kept library, rather than our own.
//
// It does no access control of its own and must run in a process that
// already carries the user's uid and gids (the server starts the
// subsystem as the user, see Config.SFTPServer), so the kernel enforces
// permissions. There is no chroot: the user sees the whole filesystem as
// a shell would. Relative paths are relative to the working directory,
// which the server sets to the user's home.
func ServeSFTP(in io.Reader, out io.WriteCloser) error {
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{in, out})
	if err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	return nil
}
