// Package boottime measures boot stages on the guest's CLOCK_BOOTTIME and
// keeps them in the layout.BootTimes file, one "name seconds" line each.
//
// Stage 1 writes "kernel" (boot until stage 1 started) and "stage1"; stage 2
// appends "stage2" and "ready" (the absolute time the system became
// ready). All values are seconds with millisecond precision.
//
// Limits: CLOCK_BOOTTIME starts when the kernel starts timekeeping, so the
// firmware and bootloader time before the kernel is not in "kernel".
package boottime

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Clock returns the time since boot. Production code passes Now; tests
// pass a fake.
type Clock func() time.Duration

// Stage names written to the BootTimes file.
const (
	Kernel = "kernel" // boot to stage-1 start
	Stage1 = "stage1" // stage-1 duration
	Stage2 = "stage2" // stage-2 start to ready
	Ready  = "ready"  // absolute boot time at ready
)

// Entry is one line of the file.
type Entry struct {
	Name string
	D    time.Duration
}

// Times is the ordered content of a BootTimes file.
type Times []Entry

// Get returns the duration named name.
func (t Times) Get(name string) (time.Duration, bool) {
	for _, e := range t {
		if e.Name == name {
			return e.D, true
		}
	}
	return 0, false
}

// Seconds formats d as seconds with three decimals, the format of the file
// and of the ready line.
func Seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// Append adds entries to the file at path, creating it.
func Append(path string, entries ...Entry) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("boot times: %w", err)
	}
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s\n", e.Name, Seconds(e.D))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("boot times: write %s: %w", path, err)
	}
	return f.Close()
}

// Read parses the file at path.
func Read(path string) (Times, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("boot times: %w", err)
	}
	defer f.Close()
	var t Times
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		name, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		s, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return t, fmt.Errorf("boot times: %s:%d: %w", path, n, err)
		}
		t = append(t, Entry{name, time.Duration(s * float64(time.Second))})
	}
	return t, sc.Err()
}

// Steps logs how long each step of a boot stage took, when enabled (the
// kestrel.debug command-line flag): "what  <boot time>s (+<step>s)".
type Steps struct {
	clock Clock
	logf  func(format string, args ...any)
	on    bool
	last  time.Duration
}

// NewSteps starts timing at start.
func NewSteps(clock Clock, start time.Duration, on bool, logf func(format string, args ...any)) *Steps {
	return &Steps{clock: clock, logf: logf, on: on, last: start}
}

// Mark logs the step that just ended. Not safe for concurrent use.
func (s *Steps) Mark(what string) {
	if !s.on {
		return
	}
	now := s.clock()
	s.logf("%-16s %6.3fs (+%.3fs)", what, now.Seconds(), (now - s.last).Seconds())
	s.last = now
}
