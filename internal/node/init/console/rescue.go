package console

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// DefaultRescueTimeout is how long a rescue shell waits for someone at the
// console before PID 1 reboots: long enough for an operator watching the
// console to start typing, short enough that an unattended node reaches
// the reboot A/B fallback needs.
const DefaultRescueTimeout = 60 * time.Second

// RescueTimeout reads layout.CmdlineRescueTimeout (whole seconds, 0: stay
// in rescue unless the boot is on trial); unset or bad is the default, a
// bad value reported through logf. Stage 1 (a refused root) and every
// later rescue read it here.
func RescueTimeout(cmd kcmdline.Cmdline, logf func(string, ...any)) time.Duration {
	v, ok := cmd.Get(layout.CmdlineRescueTimeout)
	if !ok {
		return DefaultRescueTimeout
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		logf("warning: kernel command line: %s=%q: want whole seconds, 0 or more; using %v", layout.CmdlineRescueTimeout, v, DefaultRescueTimeout)
		return DefaultRescueTimeout
	}
	return time.Duration(n) * time.Second
}

// RescueTimer decides when PID 1 leaves a rescue shell for a reboot.
type RescueTimer struct {
	// Timeout is how long the console may stay unused; 0 is for ever,
	// unless OnTrial.
	Timeout time.Duration
	// OnTrial: the booted entry is being tried (boot counting), so only
	// a reboot lets the loader count the failure and fall back. The
	// reboot then comes Timeout (DefaultRescueTimeout when 0) after the
	// start, whether or not someone uses the console.
	OnTrial bool
	// LastInput is when someone last typed on the console (TTYLastInput);
	// nil counts as never.
	LastInput func() time.Time
	Now       func() time.Time
	// After is time.After, injected for tests.
	After func(time.Duration) <-chan time.Time
}

// Wait returns true when it is time to reboot, false if ctx ended first.
// It never returns true for a Timeout of 0 off trial.
func (r RescueTimer) Wait(ctx context.Context) bool {
	limit := r.limit()
	if limit == 0 {
		<-ctx.Done()
		return false
	}
	deadline := r.Now().Add(limit)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-r.After(deadline.Sub(r.Now())):
		}
		if r.OnTrial || r.LastInput == nil {
			return true
		}
		// Someone typed since: the deadline moves to Timeout after that.
		next := r.LastInput().Add(limit)
		if !next.After(deadline) || !next.After(r.Now()) {
			return true
		}
		deadline = next
	}
}

// TTYLastInput returns when tty was last read from, that is when someone
// last typed at the shell on it: the kernel updates a tty's access time
// on input (with a granularity of a few seconds), not on output. Zero
// when it cannot tell.
func TTYLastInput(tty string) func() time.Time {
	return func() time.Time {
		st, err := os.Stat(tty)
		if err != nil {
			return time.Time{}
		}
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			return time.Unix(s.Atim.Unix())
		}
		return time.Time{}
	}
}

// Banner is the line that tells the console what the timer will do.
func (r RescueTimer) Banner() string {
	switch {
	case r.OnTrial:
		return fmt.Sprintf("this boot is on trial: rebooting in %v so that the boot loader can fall back", r.limit())
	case r.Timeout == 0:
		return fmt.Sprintf("staying in rescue (%s=0)", layout.CmdlineRescueTimeout)
	}
	return fmt.Sprintf("rebooting after %v without console input (%s=SECONDS, 0 to stay)", r.Timeout, layout.CmdlineRescueTimeout)
}

// limit is the timeout in effect: 0 (for ever) only off trial.
func (r RescueTimer) limit() time.Duration {
	if r.Timeout == 0 && r.OnTrial {
		return DefaultRescueTimeout
	}
	return r.Timeout
}
