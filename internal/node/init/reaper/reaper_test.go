package reaper

import (
	"context"
	"errors"
	"os/exec"
	"testing"
)

// TestNilReaper runs first: a Loop left over from another test would
// reap these children before their own wait.
func TestNilReaper(t *testing.T) {
	var r *Reaper
	if err := r.Run(exec.Command("/bin/sh", "-c", "exit 0")); err != nil {
		t.Errorf("true: %v", err)
	}
	err := r.Run(exec.Command("/bin/sh", "-c", "exit 3"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Exit.Code() != 3 {
		t.Errorf("exit 3: %v", err)
	}
	c, err := r.Start(exec.Command("/bin/sh", "-c", "kill -9 $$"))
	if err != nil {
		t.Fatal(err)
	}
	if e := <-c; e.Code() != 137 || !e.Status.Signaled() {
		t.Errorf("kill -9: %v", e)
	}
	if _, err := r.Start(exec.Command("/nonexistent/command")); err == nil {
		t.Error("a command that cannot start started")
	}
}

func TestRunAndOrphans(t *testing.T) {
	orphans := make(chan Exit, 4)
	r := New(func(e Exit) { orphans <- e })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Loop(ctx)

	if err := r.Run(exec.Command("/bin/sh", "-c", "exit 0")); err != nil {
		t.Errorf("true: %v", err)
	}
	err := r.Run(exec.Command("/bin/sh", "-c", "exit 3"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Exit.Code() != 3 || ee.Exit.String() != "exit status 3" {
		t.Errorf("exit 3: %v", err)
	}
	err = r.Run(exec.Command("/bin/sh", "-c", "kill -9 $$"))
	if !errors.As(err, &ee) || ee.Exit.Code() != 137 || ee.Exit.String() != "killed by killed" {
		t.Errorf("kill -9: %v", err)
	}
	// A child started outside the reaper is still reaped, as an orphan.
	c := exec.Command("/bin/true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if e := <-orphans; e.Pid != c.Process.Pid || e.Code() != 0 {
		t.Errorf("orphan = %+v", e)
	}
}
