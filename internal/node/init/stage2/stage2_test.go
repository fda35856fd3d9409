package stage2

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMounts(t *testing.T) {
	var got []string
	for _, m := range Mounts("/") {
		s := m.String()
		if m.Optional {
			s += " [optional]"
		}
		got = append(got, s)
	}
	want := []string{
		" on / (shared)",
		"devpts on /dev/pts type devpts (nosuid,noexec,gid=5,mode=620,ptmxmode=666)",
		"shm on /dev/shm type tmpfs (nosuid,nodev,mode=1777)",
		"mqueue on /dev/mqueue type mqueue (nosuid,nodev,noexec) [optional]",
		"cgroup2 on /sys/fs/cgroup type cgroup2 (nosuid,nodev,noexec,nsdelegate)",
		"securityfs on /sys/kernel/security type securityfs (nosuid,nodev,noexec) [optional]",
		"debugfs on /sys/kernel/debug type debugfs (nosuid,nodev,noexec) [optional]",
		"tracefs on /sys/kernel/tracing type tracefs (nosuid,nodev,noexec) [optional]",
		"configfs on /sys/kernel/config type configfs (nosuid,nodev,noexec) [optional]",
		"pstore on /sys/fs/pstore type pstore (nosuid,nodev,noexec) [optional]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Mounts:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l := LateMounts("/"); len(l) != 1 || l[0].FSType != "bpf" || !l[0].Optional {
		t.Errorf("LateMounts = %+v", l)
	}
	if m := Mounts("/x")[4]; m.Target != "/x/sys/fs/cgroup" {
		t.Errorf("root prefix: %s", m.Target)
	}
}

func TestStatusWithoutBoot(t *testing.T) {
	s := &System{Version: "0.1", Slot: "a", Hostname: "h", Logf: func(string, ...any) {}}
	s.Warn("no %s", "network")
	st := s.status(5e9)
	if st.IP != "" || st.Uptime != 5e9 || len(st.Warnings) != 1 || st.Warnings[0] != "no network" {
		t.Errorf("status = %+v", st)
	}
}

func TestRunHooksSurvivesPanics(t *testing.T) {
	s := &System{Logf: func(string, ...any) {}}
	ran := false
	var marks []string
	runHooks(context.Background(), s, []Hook{
		{Name: "buggy", Run: func(context.Context, *System) error { panic("nil map") }},
		{Name: "next", Run: func(context.Context, *System) error { ran = true; return nil }},
	}, func(step string) { marks = append(marks, step) })
	if !ran || len(s.warnings) != 1 || !strings.Contains(s.warnings[0], "buggy: panic: nil map") {
		t.Errorf("ran %v, warnings %q", ran, s.warnings)
	}
	// A step mark after each hook, the one that panicked too.
	if want := []string{"hook: buggy", "hook: next"}; !slices.Equal(marks, want) {
		t.Errorf("step marks %q, want %q", marks, want)
	}
}

// A panic in a goroutine PID 1 starts is a warning, not the end of PID 1.
func TestGoRecovers(t *testing.T) {
	logged := make(chan string, 1)
	sys := &System{Logf: func(f string, a ...any) { logged <- fmt.Sprintf(f, a...) }}
	sys.Go("late modules", func() {
		var m map[string]int
		m["x"] = 1
	})
	if got := <-logged; !strings.HasPrefix(got, "warning: late modules: panic: assignment to entry in nil map") {
		t.Errorf("logged %q", got)
	}
	if w := sys.status(0).Warnings; len(w) != 1 {
		t.Errorf("warnings = %q", w)
	}
}

// TestNotefGoesToKernelLog: what PID 1 says after ready goes to /dev/kmsg
// at level 6, not to the console a shell is using.
func TestNotefGoesToKernelLog(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	kmsg := filepath.Join(root, "dev", "kmsg")
	if err := os.WriteFile(kmsg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var console []string
	sys := &System{root: root, Logf: func(f string, a ...any) { console = append(console, fmt.Sprintf(f, a...)) }}
	sys.Notef("no input devices: %s", "the power button will not be seen")
	got, err := os.ReadFile(kmsg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<6>kestrel: no input devices: the power button will not be seen\n"; string(got) != want {
		t.Errorf("/dev/kmsg got %q, want %q", got, want)
	}
	if len(console) != 0 {
		t.Errorf("console got %q, want nothing", console)
	}
	// No /dev/kmsg (a container, a test root): nothing, no panic.
	(&System{root: t.TempDir(), Logf: t.Logf}).Notef("x")
}
