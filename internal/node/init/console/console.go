// Package console finds the terminal behind /dev/console and starts
// interactive shells on it with a session and a controlling terminal, so
// job control and Ctrl-C work.
//
// /dev/console itself cannot be a useful controlling terminal (the kernel
// refuses to make it one on open, and busybox's sh then runs without job
// control), so Device resolves the real tty the kernel writes the console
// to (/sys/class/tty/console/active, last entry: the one /dev/console is),
// the way busybox's cttyhack does.
//
// There is no login and no password: whoever holds the physical or serial
// console is root. That is a documented choice for edge nodes, whose
// console access is as good as holding the disk.
//
// Limits: one console (the primary one); no agetty-style baud or line
// discipline setup beyond what the kernel configured from console=.
package console

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Device returns the tty device the primary console is on, e.g.
// "/dev/ttyS0", or fallback when it cannot be told.
func Device(sysRoot, devDir, fallback string) string {
	b, err := os.ReadFile(filepath.Join(sysRoot, "class", "tty", "console", "active"))
	if err != nil {
		return fallback
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fallback
	}
	dev := filepath.Join(devDir, f[len(f)-1])
	if _, err := os.Stat(dev); err != nil {
		return fallback
	}
	return dev
}

// Env is the environment of a console shell.
func Env(term string) []string {
	if term == "" {
		term = "linux"
	}
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"SHELL=/bin/sh",
		"TERM=" + term,
	}
}

// ShellCommand returns a command running shell (with args) on tty as the
// leader of a new session whose controlling terminal is tty. The caller
// starts it; the caller owns the returned file and must close it after
// Start.
func ShellCommand(tty, shell string, args []string, env []string) (*exec.Cmd, *os.File, error) {
	t, err := os.OpenFile(tty, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open console %s: %w", tty, err)
	}
	cmd := exec.Command(shell, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = t, t, t
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return cmd, t, nil
}

// Rescue runs shell on tty forever, restarting it when it exits, after
// printing banner to w. It is the last resort of a PID 1 that cannot
// continue: it never returns, so the kernel never panics on init exiting.
// If the shell cannot even start, it waits and tries again, so a console
// stays readable.
func Rescue(w io.Writer, tty, shell, banner string) {
	for {
		fmt.Fprint(w, banner)
		cmd, t, err := ShellCommand(tty, shell, nil, Env(""))
		if err == nil {
			err = cmd.Start()
			t.Close()
			if err == nil {
				err = cmd.Wait()
			}
		}
		if err != nil {
			fmt.Fprintf(w, "rescue shell %s on %s: %v\n", shell, tty, err)
		}
		time.Sleep(time.Second)
	}
}
