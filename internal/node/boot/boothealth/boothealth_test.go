package boothealth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDeclare(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		do        func(d *Declarer) error
		state     State
		line      string
		listeners int
	}{
		{"pending", func(d *Declarer) error { return d.Pending("k3s server starting", now.Add(time.Minute)) }, Pending, "pending: k3s server starting", 0},
		{"good", func(d *Declarer) error { return d.Good(context.Background(), "k3s server healthy") }, Good, "good: k3s server healthy", 1},
		{"not good", func(d *Declarer) error { return d.NotGood("k3s server not healthy within 20s") }, NotGood, "NOT GOOD: k3s server not healthy within 20s", 0},
		{"pending then good", func(d *Declarer) error {
			d.Pending("x", now)
			return d.Good(context.Background(), "y")
		}, Good, "good: y", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			d := &Declarer{Path: filepath.Join(t.TempDir(), "run", "boot-health"), Now: func() time.Time { return now },
				OnGood: []func(context.Context) error{func(context.Context) error { calls++; return nil }}}
			if err := tc.do(d); err != nil {
				t.Fatal(err)
			}
			r, err := Read(d.Path)
			if err != nil || r == nil {
				t.Fatalf("Read: %v, %v", r, err)
			}
			if r.State != tc.state || r.String() != tc.line || !r.Since.Equal(now) {
				t.Errorf("record %+v (%q), want %s %q", r, r, tc.state, tc.line)
			}
			if calls != tc.listeners {
				t.Errorf("OnGood ran %d times, want %d", calls, tc.listeners)
			}
			if fi, err := os.Stat(d.Path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("record file: %v, %v; want mode 0600 (a detail is root's to read)", fi.Mode(), err)
			}
		})
	}
}

func TestDeclaredOnce(t *testing.T) {
	d := &Declarer{Path: filepath.Join(t.TempDir(), "h"), Now: time.Now,
		OnGood: []func(context.Context) error{func(context.Context) error { return errors.New("mark slot: no ESP") }}}
	if err := d.Good(context.Background(), "ok"); err == nil || !strings.Contains(err.Error(), "mark slot: no ESP") {
		t.Errorf("listener error not returned: %v", err)
	}
	if err := d.NotGood("late"); !errors.Is(err, ErrDeclared) {
		t.Errorf("second declaration: %v, want ErrDeclared", err)
	}
	if err := d.Pending("late", time.Now()); !errors.Is(err, ErrDeclared) {
		t.Errorf("pending after declaration: %v, want ErrDeclared", err)
	}
	if r, _ := Read(d.Path); r.State != Good {
		t.Errorf("state %s after refused declarations, want good", r.State)
	}
	if r, err := Read(filepath.Join(t.TempDir(), "absent")); r != nil || err != nil {
		t.Errorf("absent file: %v, %v", r, err)
	}
}

// TestListenerPanic: a listener that panics (the live ISO's node labeller
// once called a nil logger) is an error of Good, the others still run, and
// PID 1 lives on.
func TestListenerPanic(t *testing.T) {
	ran := false
	d := &Declarer{Path: filepath.Join(t.TempDir(), "h"), Now: time.Now,
		OnGood: []func(context.Context) error{
			func(context.Context) error { var f func(); f(); return nil },
			func(context.Context) error { ran = true; return nil },
		}}
	err := d.Good(context.Background(), "ok")
	if err == nil || !strings.Contains(err.Error(), "listener 0: panic") {
		t.Errorf("panic not returned as an error: %v", err)
	}
	if !ran {
		t.Error("the listener after the panicking one did not run")
	}
	if r, _ := Read(d.Path); r == nil || r.State != Good {
		t.Errorf("state %v, want good", r)
	}
}
