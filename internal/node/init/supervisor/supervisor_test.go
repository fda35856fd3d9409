package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
)

func newTest(t *testing.T, cfg Config) *Supervisor {
	t.Helper()
	r := reaper.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go r.Loop(ctx)
	cfg.Reaper = r
	cfg.LogDir = t.TempDir()
	return New(cfg)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDelay(t *testing.T) {
	c := Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {50, time.Second}} {
		if got := c.Delay(tc.n); got != tc.want {
			t.Errorf("Delay(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestRestartBackoffAndLog(t *testing.T) {
	s := newTest(t, Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond, StableAfter: time.Hour})
	if err := s.Start(Spec{Name: "flappy", Path: "/bin/sh", Args: []string{"-c", "echo hello from $$; exit 2"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(Spec{Name: "flappy", Path: "/bin/true"}); err == nil {
		t.Error("duplicate name accepted")
	}
	waitFor(t, "3 restarts", func() bool { return s.Status()[0].Restarts >= 3 })
	st := s.Status()[0]
	if st.LastExit != "exit status 2" {
		t.Errorf("LastExit = %q", st.LastExit)
	}
	s.StopAll()
	if st := s.Status()[0]; st.State != Stopped {
		t.Errorf("after StopAll: %+v", st)
	}
	b, _ := os.ReadFile(filepath.Join(s.cfg.LogDir, "flappy.log"))
	if strings.Count(string(b), "hello from") < 3 || !strings.Contains(string(b), "ended: exit status 2") {
		t.Errorf("log:\n%s", b)
	}
}

func TestStopTermThenKill(t *testing.T) {
	s := newTest(t, Config{StopTimeout: 100 * time.Millisecond})
	s.Start(Spec{Name: "polite", Path: "/bin/sleep", Args: []string{"60"}})
	s.Start(Spec{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; echo ready; while :; do sleep 0.01; done"}})
	waitFor(t, "both running", func() bool {
		st := s.Status()
		return st[0].State == Running && st[1].State == Running && st[0].PID > 0
	})
	waitFor(t, "trap set", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.cfg.LogDir, "stubborn.log"))
		return strings.Contains(string(b), "ready")
	})
	start := time.Now()
	s.StopAll()
	// StopTimeout is 100 ms: StopAll must not wait the sleeper's 60 s
	// (a generous bound, so a loaded machine does not fail it).
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("StopAll took %v", d)
	}
	st := s.Status()
	if st[0].LastExit != "killed by terminated" {
		t.Errorf("polite: %+v", st[0])
	}
	if st[1].LastExit != "killed by killed" {
		t.Errorf("stubborn: %+v", st[1])
	}
}

func TestStableRunResetsBackoff(t *testing.T) {
	s := newTest(t, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Hour, StableAfter: 0})
	s.cfg.StableAfter = 1 // every run counts as stable: delay stays at MinBackoff
	s.Start(Spec{Name: "steady", Path: "/bin/sh", Args: []string{"-c", "sleep 0.01"}})
	waitFor(t, "5 restarts", func() bool { return s.Status()[0].Restarts >= 5 })
	s.StopAll()
}

// TestExe runs a service from another file than its Path, which stays
// its argv[0].
func TestExe(t *testing.T) {
	s := newTest(t, Config{StableAfter: time.Hour})
	if err := s.Start(Spec{Name: "named", Path: "/usr/bin/named-otherwise", Exe: "/bin/sh", Args: []string{"-c", `tr '\0' ' ' </proc/$$/cmdline; echo; readlink /proc/$$/exe; sleep 60`}}); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(s.cfg.LogDir, "named.log")
	exe, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the service's output", func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "\n"+exe+"\n")
	})
	s.StopAll()
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "/usr/bin/named-otherwise -c ") || !strings.Contains(string(b), "\n"+exe+"\n") {
		t.Errorf("log does not show argv[0] /usr/bin/named-otherwise and the program %s:\n%s", exe, b)
	}
}

func TestMissingBinary(t *testing.T) {
	s := newTest(t, Config{MinBackoff: 10 * time.Millisecond})
	s.Start(Spec{Name: "ghost", Path: "/nonexistent/bin"})
	waitFor(t, "a failed start", func() bool { return strings.HasPrefix(s.Status()[0].LastExit, "start failed") })
	st := s.Status()[0]
	if st.State != Backoff && st.State != Running {
		t.Errorf("state = %v", st.State)
	}
	s.StopAll()
}

func TestReplace(t *testing.T) {
	s := newTest(t, Config{StopTimeout: 100 * time.Millisecond})
	if err := s.Start(Spec{Name: "svc", Path: "/bin/sh", Args: []string{"-c", "echo first; exec sleep 60"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first running", func() bool { st := s.Status(); return st[0].State == Running && st[0].PID > 0 })
	oldPID := s.Status()[0].PID
	if err := s.Replace(Spec{Name: "svc", Path: "/bin/sh", Args: []string{"-c", "echo second; exec sleep 60"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second running", func() bool {
		st := s.Status()
		return len(st) == 1 && st[0].State == Running && st[0].PID > 0 && st[0].PID != oldPID
	})
	if err := syscall.Kill(oldPID, 0); err == nil {
		t.Errorf("old process %d still alive after Replace", oldPID)
	}
	waitFor(t, "second's output", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.cfg.LogDir, "svc.log"))
		return strings.Contains(string(b), "second")
	})
	// A name that was never started is started.
	if err := s.Replace(Spec{Name: "new", Path: "/bin/sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new running", func() bool { st := s.Status(); return len(st) == 2 && st[0].State == Running })
	s.StopAll()
}

// TestLowPriority runs services under a CgroupRoot that stands in for
// cgroupfs: a plain directory whose service directories already hold a
// cpu.weight file, as the kernel creates one with each cgroup when the
// cpu controller is on (the clone into a plain directory fails, and the
// supervisor runs the service in its own cgroup instead, as on a kernel
// without clone3). "none" has no cpu.weight: no cpu controller.
func TestLowPriority(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"early", "flappy", "late"} {
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, "cpu.weight"), []byte("100\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := newTest(t, Config{CgroupRoot: root, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, StableAfter: time.Hour})
	defer s.StopAll()
	weight := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(root, name, "cpu.weight"))
		return strings.TrimSpace(string(b))
	}
	running := func(name string) func() bool {
		return func() bool {
			for _, st := range s.Status() {
				if st.Name == name && (st.State == Running || st.Restarts > 0) {
					return true
				}
			}
			return false
		}
	}

	s.LowPriority(true)
	for _, sp := range []Spec{
		{Name: "early", Path: "/bin/sleep", Args: []string{"60"}},
		{Name: "flappy", Path: "/bin/sh", Args: []string{"-c", "exit 1"}},
		{Name: "none", Path: "/bin/sleep", Args: []string{"60"}},
	} {
		if err := s.Start(sp); err != nil {
			t.Fatal(err)
		}
		waitFor(t, sp.Name+" started", running(sp.Name))
	}
	restarts := func() int {
		for _, st := range s.Status() {
			if st.Name == "flappy" {
				return st.Restarts
			}
		}
		return 0
	}
	waitFor(t, "flappy restarted", func() bool { return restarts() >= 2 })
	// flappy's restarts rewrite its file (truncate, then write: a reader
	// can see it empty in between, which cgroupfs never shows), so each
	// weight is waited for.
	for _, tc := range []struct{ name, want string }{{"early", "1"}, {"flappy", "1"}, {"none", ""}} {
		waitFor(t, "while low: "+tc.name+" cpu.weight "+tc.want, func() bool { return weight(tc.name) == tc.want })
	}

	s.LowPriority(false)
	if err := s.Start(Spec{Name: "late", Path: "/bin/sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "late started", running("late"))
	n := restarts()
	waitFor(t, "flappy restarted again", func() bool { return restarts() >= n+2 })
	for _, tc := range []struct{ name, want string }{{"early", "100"}, {"flappy", "100"}, {"late", "100"}, {"none", ""}} {
		waitFor(t, "after: "+tc.name+" cpu.weight "+tc.want, func() bool { return weight(tc.name) == tc.want })
	}
	for _, st := range s.Status() {
		if st.Name != "flappy" && st.State != Running {
			t.Errorf("%s not running: %+v", st.Name, st)
		}
	}
}
