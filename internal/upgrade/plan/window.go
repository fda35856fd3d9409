package plan

import (
	"errors"
	"fmt"
	"time"

	"github.com/kubereboot/kured/pkg/timewindow"
)

// Window is a parsed spec.window. SUC parses windows with kured's
// pkg/timewindow (v1.13.1), and so does Kestrel, through the same package,
// so that a Plan opens exactly when it would under SUC:
//
//   - days: names (su, sun, sunday, ... any case) or numbers 0-6, at least
//     one; a window without days would never open under SUC, so Kestrel
//     reports it as invalid instead of waiting forever;
//   - startTime/endTime: exactly kured's layouts 15:04, 15:04:05, 03:04pm,
//     15, 03pm, 3pm (so 17, 5pm, 09:30am; "pm" is lower case only, and
//     9:30am needs its leading zero); both are required;
//   - timeZone: a tz database name, UTC when empty (the controller embeds
//     time/tzdata, so no zoneinfo is needed in its image);
//   - an end before the start wraps past midnight, and both parts are
//     judged by the weekday of the moment tested: with days [mon],
//     22:00-02:00 is open Monday 00:00-02:00 and 22:00-24:00, not Tuesday
//     morning (kured's semantics).
type Window struct {
	tw *timewindow.TimeWindow
}

// ParseWindow parses a window spec as SUC does, with field names in the
// errors.
func ParseWindow(w *TimeWindowSpec) (*Window, error) {
	var days []string
	for _, d := range w.Days {
		if d != "" { // kured skips empty days
			days = append(days, string(d))
		}
	}
	if len(days) == 0 {
		return nil, errors.New("days: at least one day is required (without days the window never opens)")
	}
	if w.StartTime == "" || w.EndTime == "" {
		return nil, errors.New("startTime and endTime are both required (15:04, 15:04:05, 03:04pm, 15, 03pm or 3pm)")
	}
	if _, err := time.LoadLocation(w.TimeZone); err != nil {
		return nil, fmt.Errorf("timeZone: %w", err)
	}
	tw, err := timewindow.New(days, w.StartTime, w.EndTime, w.TimeZone)
	if err != nil {
		// kured's messages name the value but not the field or the forms.
		return nil, fmt.Errorf("%w (days: su..sa, sun..sat, sunday..saturday or 0-6; times: 15:04, 15:04:05, 03:04pm, 15, 03pm or 3pm)", err)
	}
	return &Window{tw: tw}, nil
}

// Contains reports whether t falls inside the window.
func (w *Window) Contains(t time.Time) bool { return w.tw.Contains(t) }

// String describes the window as kured does ("Monday between 19:00 and
// 21:00 UTC").
func (w *Window) String() string { return w.tw.String() }

// NextOpen returns the first time at or after t (to the minute, within
// eight days) at which the window is open, for requeueing; zero if never.
func (w *Window) NextOpen(t time.Time) time.Time {
	if w.Contains(t) {
		return t
	}
	c := t.Truncate(time.Minute).Add(time.Minute)
	for i := 0; i < 8*24*60; i++ {
		if w.Contains(c) {
			return c
		}
		c = c.Add(time.Minute)
	}
	return time.Time{}
}
