package console

import (
	"context"
	"testing"
	"time"
)

// The rescue timer on a fake clock: idle consoles reboot after Timeout,
// input postpones it (off trial only), 0 stays unless on trial.
func TestRescueTimer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		onTrial bool
		inputs  []time.Duration // console input at these offsets from t0
		want    time.Duration   // reboot at this offset; -1: never
	}{
		{"idle", time.Minute, false, nil, time.Minute},
		{"input before the deadline postpones", time.Minute, false, []time.Duration{30 * time.Second}, 90 * time.Second},
		{"repeated input", time.Minute, false, []time.Duration{50 * time.Second, 100 * time.Second}, 160 * time.Second},
		{"input before the start counts for nothing", time.Minute, false, []time.Duration{-time.Hour}, time.Minute},
		{"on trial, console in use", time.Minute, true, []time.Duration{30 * time.Second}, time.Minute},
		{"zero stays", 0, false, nil, -1},
		{"zero on trial is the default", 0, true, nil, DefaultRescueTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			lastInput := func() time.Time {
				var last time.Time
				for _, in := range tc.inputs {
					if at := t0.Add(in); !at.After(now) {
						last = at
					}
				}
				return last
			}
			r := RescueTimer{Timeout: tc.timeout, OnTrial: tc.onTrial, LastInput: lastInput, Now: func() time.Time { return now },
				After: func(d time.Duration) <-chan time.Time {
					now = now.Add(d)
					c := make(chan time.Time, 1)
					c <- now
					return c
				}}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.want < 0 {
				cancel() // Wait must block until ctx ends, then say no
			}
			defer cancel()
			got := r.Wait(ctx)
			switch {
			case tc.want < 0 && got:
				t.Errorf("rebooted at +%v, want never", now.Sub(t0))
			case tc.want >= 0 && (!got || now.Sub(t0) != tc.want):
				t.Errorf("Wait = %v at +%v, want true at +%v", got, now.Sub(t0), tc.want)
			}
			if r.Banner() == "" {
				t.Error("no banner")
			}
		})
	}
}
