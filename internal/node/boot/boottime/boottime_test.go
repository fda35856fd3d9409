package boottime

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAppendRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "boot-times")
	if err := Append(p, Entry{Kernel, 1230 * time.Millisecond}, Entry{Stage1, 210 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := Append(p, Entry{Stage2, 400 * time.Millisecond}, Entry{Ready, 1840 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if want := "kernel 1.230\nstage1 0.210\nstage2 0.400\nready 1.840\n"; string(b) != want {
		t.Errorf("file = %q, want %q", b, want)
	}
	tm, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Duration{Kernel: 1230 * time.Millisecond, Stage2: 400 * time.Millisecond, Ready: 1840 * time.Millisecond} {
		if got, ok := tm.Get(name); !ok || got.Round(time.Millisecond) != want {
			t.Errorf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
	if _, ok := tm.Get("nope"); ok {
		t.Error("Get of a missing name succeeded")
	}
	os.WriteFile(p, []byte("kernel x\n"), 0o644)
	if _, err := Read(p); err == nil {
		t.Error("bad number accepted")
	}
	if Now() <= 0 {
		t.Error("Now() is not positive")
	}
}

func TestSteps(t *testing.T) {
	now := 2 * time.Second
	clock := func() time.Duration { return now }
	var lines []string
	logf := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
	s := NewSteps(clock, now, true, logf)
	now += 250 * time.Millisecond
	s.Mark("modules")
	now += time.Second
	s.Mark("mounted")
	if len(lines) != 2 || lines[0] != "modules           2.250s (+0.250s)" || lines[1] != "mounted           3.250s (+1.000s)" {
		t.Errorf("lines = %q", lines)
	}
	NewSteps(clock, now, false, logf).Mark("quiet")
	if len(lines) != 2 {
		t.Error("disabled Steps logged")
	}
}
