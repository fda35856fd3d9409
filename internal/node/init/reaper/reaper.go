// Package reaper collects the exit status of every child of PID 1,
// including orphans re-parented to it, and hands each status to whoever
// started that child.
//
// PID 1 must reap with wait4(-1), which would steal the status that
// exec.Cmd.Wait expects; so code running inside PID 1 starts processes
// through Reaper.Start (or Run) instead of calling Wait itself. Start
// registers the pid under the same lock the reaping loop takes before it
// dispatches, so a child that exits at once is never lost. Code that runs
// both inside PID 1 and outside it holds a *Reaper that may be nil: a nil
// Reaper's Start and Run wait for the child themselves.
//
// Limits: one Reaper per process; commands started with plain
// exec.Cmd.Run inside PID 1 race with it and may see ECHILD.
package reaper

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
)

// Exit is how a child ended.
type Exit struct {
	Pid    int
	Status syscall.WaitStatus
}

// Code returns the exit code, or 128+signal for a killed process.
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

func (e Exit) String() string {
	if e.Status.Signaled() {
		return "killed by " + e.Status.Signal().String()
	}
	return "exit status " + strconv.Itoa(e.Status.ExitStatus())
}

// Reaper dispatches exit statuses.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan Exit
	orphans func(Exit)
}

// New returns a Reaper; orphan, if not nil, is told about children
// nobody registered (daemons that double-forked and died).
func New(orphan func(Exit)) *Reaper {
	return &Reaper{waiters: map[int]chan Exit{}, orphans: orphan}
}

// Loop reaps children on every SIGCHLD until ctx ends.
func (r *Reaper) Loop(ctx context.Context) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	r.ReapAll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.ReapAll()
		}
	}
}

// ReapAll collects every child that has exited, without blocking.
func (r *Reaper) ReapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		r.mu.Lock()
		c, ok := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		e := Exit{Pid: pid, Status: ws}
		if ok {
			c <- e
		} else if r.orphans != nil {
			r.orphans(e)
		}
	}
}

// Start starts cmd and returns a channel that receives its exit status
// once. The caller must not call cmd.Wait.
//
// A nil Reaper (outside PID 1: host tests, a command run by hand) starts
// cmd and waits for it itself, so code that takes an optional *Reaper
// starts its children one way.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan Exit, error) {
	if r == nil {
		return startAndWait(cmd)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := make(chan Exit, 1)
	r.waiters[cmd.Process.Pid] = c
	return c, nil
}

// startAndWait starts cmd and waits for it in a goroutine.
func startAndWait(cmd *exec.Cmd) (<-chan Exit, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := make(chan Exit, 1)
	go func() {
		ws := syscall.WaitStatus(255 << 8) // exit status 255 if waiting fails
		if st, err := cmd.Process.Wait(); err == nil {
			ws = st.Sys().(syscall.WaitStatus)
		}
		c <- Exit{Pid: cmd.Process.Pid, Status: ws}
	}()
	return c, nil
}

// Run starts cmd and waits for it; it is exec.Cmd.Run for code inside
// PID 1. A non-zero exit is an *ExitError.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	c, err := r.Start(cmd)
	if err != nil {
		return err
	}
	e := <-c
	cmd.Process.Release()
	if e.Code() != 0 {
		return &ExitError{Path: cmd.Path, Exit: e}
	}
	return nil
}

// ExitError is a command that did not exit 0.
type ExitError struct {
	Path string
	Exit Exit
}

func (e *ExitError) Error() string { return e.Path + ": " + e.Exit.String() }
