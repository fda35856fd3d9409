package sshd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal pair opened through /dev/ptmx.
type pty struct {
	master   *os.File
	masterFD int // kept apart: (*os.File).Fd would make master blocking
	tty      *os.File
	name     string
}

// openPTY opens a new pseudo-terminal whose slave belongs to uid with mode
// 0620, as login(1) leaves it; its group is the one devpts gave it (tty
// when mounted with gid=5).
func openPTY(uid int) (*pty, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	tty, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	if err := tty.Chown(uid, -1); err != nil {
		tty.Close()
		unix.Close(fd)
		return nil, fmt.Errorf("chown %s: %w", name, err)
	}
	tty.Chmod(0o620)
	return &pty{master: os.NewFile(uintptr(fd), "/dev/ptmx"), masterFD: fd, tty: tty, name: name}, nil
}

func (p *pty) resize(cols, rows uint32) {
	unix.IoctlSetWinsize(p.masterFD, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
}

func (p *pty) close() {
	if p.tty != nil {
		p.tty.Close()
	}
	p.master.Close()
}
