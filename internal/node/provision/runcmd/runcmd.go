// Package runcmd runs the config's command lists (init_cmd, boot_cmd,
// run_cmd) with `/bin/sh -c`, in order, logging each command and its
// output line by line, and collecting failures without stopping: a failing
// command must not keep the node from booting.
//
// Every command has a deadline (Runner.Timeout, DefaultTimeout when
// unset): a command that never exits (`ping` before the network, `sleep
// 100000`) is killed with its process group and reported, so it cannot
// hold the list, or what waits for it, for good.
//
// Limits: commands run as root with stdin on /dev/null; a command that
// leaves background processes is not waited for beyond its own exit (its
// children keep running); output lines longer than 64 KiB are split.
package runcmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
)

// Runner runs command lists.
type Runner struct {
	// Shell runs each command as `Shell -c command`; default /bin/sh.
	Shell string
	// Env is the commands' environment; nil means an empty one but PATH.
	Env []string
	// Dir is the working directory; default "/".
	Dir string
	// Chroot, if set, runs the commands with this directory as their root
	// (stage 1 runs init_cmd in the assembled new root); Shell and Dir are
	// then paths inside it.
	Chroot string
	// Stdin is the commands' standard input; nil opens /dev/null (which
	// stage 1, once /dev has moved into the new root, has not: it passes
	// the new root's).
	Stdin *os.File
	// Log receives "phase[i]: $ command", the output lines prefixed with
	// "phase[i]: ", and the result. Nil discards.
	Log io.Writer
	// Timeout bounds each command (its whole process group is killed
	// and the command reported as timed out); zero is DefaultTimeout.
	// There is deliberately no "none".
	Timeout time.Duration
	// Reaper, inside PID 1, collects the commands' exit statuses (PID 1
	// reaps every child, so exec.Cmd.Wait would race with it). Nil: the
	// runner waits for its children itself.
	Reaper *reaper.Reaper
}

// DefaultTimeout is each command's deadline when Runner.Timeout is
// zero: long enough for a package download or a disk format, short
// enough that a hung command is noticed the same boot.
const DefaultTimeout = 5 * time.Minute

// DefaultPath is the PATH of commands when Env has none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Run runs cmds in order under the name phase ("boot_cmd"). It returns one
// error per failed command, joined, each naming phase[i] and the command.
// A cancelled ctx stops the list.
func (r Runner) Run(ctx context.Context, phase string, cmds []string) error {
	var errs []error
	for i, c := range cmds {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: stopped before [%d]: %w", phase, i, err))
			break
		}
		name := fmt.Sprintf("%s[%d]", phase, i)
		if err := r.runOne(ctx, name, c); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, c, err))
		}
	}
	return errors.Join(errs...)
}

func (r Runner) runOne(ctx context.Context, name, command string) error {
	log := r.Log
	if log == nil {
		log = io.Discard
	}
	shell, dir, env := r.Shell, r.Dir, r.Env
	if shell == "" {
		shell = "/bin/sh"
	}
	if dir == "" {
		dir = "/"
	}
	if env == nil {
		env = []string{DefaultPath}
	}
	cmd := exec.Command(shell, "-c", command)
	cmd.Dir, cmd.Env = dir, env
	if r.Stdin != nil {
		cmd.Stdin = r.Stdin
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Chroot: r.Chroot}
	// A plain pipe, so that nothing depends on exec.Cmd.Wait (which PID 1
	// must not call: its reaper collects the status).
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = outW, outW

	fmt.Fprintf(log, "%s: $ %s\n", name, command)
	start := time.Now()
	exitc, err := r.Reaper.Start(cmd)
	outW.Close()
	if err != nil {
		outR.Close()
		fmt.Fprintf(log, "%s: failed: %v\n", name, err)
		return err
	}
	out := &lineWriter{prefix: name + ": ", w: log}
	copied := make(chan struct{})
	go func() {
		io.Copy(out, outR)
		close(copied)
	}()

	limit := r.Limit()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	var e reaper.Exit
	var why error
	select {
	case e = <-exitc:
	case <-deadline.C:
		why = fmt.Errorf("timed out after %v (kestrel.command_timeout)", limit)
	case <-ctx.Done():
		why = ctx.Err()
	}
	if why != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the whole group
		e = <-exitc
	}
	// Background processes may hold the pipe: do not wait for them long.
	select {
	case <-copied:
	case <-time.After(time.Second):
	}
	outR.Close()
	out.flush()

	switch {
	case why != nil:
		err = fmt.Errorf("%w (%s)", why, e)
	case e.Code() != 0:
		err = errors.New(e.String())
	}
	if err != nil {
		fmt.Fprintf(log, "%s: failed after %v: %v\n", name, time.Since(start).Round(time.Millisecond), err)
		return err
	}
	fmt.Fprintf(log, "%s: ok (%v)\n", name, time.Since(start).Round(time.Millisecond))
	return nil
}

// Limit is each command's deadline: Timeout, or DefaultTimeout.
func (r Runner) Limit() time.Duration {
	if r.Timeout <= 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

// lineWriter prefixes every output line; stdout and stderr share it.
type lineWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			if len(l.buf) > 64<<10 {
				l.emit(l.buf)
				l.buf = l.buf[:0]
			}
			return len(p), nil
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func (l *lineWriter) emit(line []byte) {
	bw := bufio.NewWriter(l.w)
	bw.WriteString(l.prefix)
	bw.Write(line)
	bw.WriteByte('\n')
	bw.Flush()
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = nil
	}
}
