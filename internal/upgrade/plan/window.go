package plan

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Window is a parsed spec.window with kured's semantics, which SUC uses:
// the days the window may open on, a start and end time of day in a time
// zone (UTC when empty), and an end before the start wrapping past
// midnight (the window then belongs to the day it opened on).
type Window struct {
	days       [7]bool
	start, end time.Duration // offsets from local midnight
	loc        *time.Location
}

var dayNames = map[string]time.Weekday{
	"0": time.Sunday, "su": time.Sunday, "sun": time.Sunday, "sunday": time.Sunday,
	"1": time.Monday, "mo": time.Monday, "mon": time.Monday, "monday": time.Monday,
	"2": time.Tuesday, "tu": time.Tuesday, "tue": time.Tuesday, "tuesday": time.Tuesday,
	"3": time.Wednesday, "we": time.Wednesday, "wed": time.Wednesday, "wednesday": time.Wednesday,
	"4": time.Thursday, "th": time.Thursday, "thu": time.Thursday, "thursday": time.Thursday,
	"5": time.Friday, "fr": time.Friday, "fri": time.Friday, "friday": time.Friday,
	"6": time.Saturday, "sa": time.Saturday, "sat": time.Saturday, "saturday": time.Saturday,
}

// Time-of-day layouts accepted, as kured accepts them.
var timeLayouts = []string{"15:04", "15:04:05", "3:04pm", "3:04 pm", "3:04:05pm", "3:04:05 pm", "03:04pm", "03:04 pm"}

// ParseWindow parses a window spec. No days, or "any", means every day.
func ParseWindow(w *TimeWindowSpec) (*Window, error) {
	out := &Window{loc: time.UTC}
	if len(w.Days) == 0 {
		out.days = [7]bool{true, true, true, true, true, true, true}
	}
	for _, d := range w.Days {
		key := strings.ToLower(strings.TrimSpace(string(d)))
		if key == "any" {
			out.days = [7]bool{true, true, true, true, true, true, true}
			continue
		}
		wd, ok := dayNames[key]
		if !ok {
			return nil, fmt.Errorf("day %q is not a day of the week", d)
		}
		out.days[wd] = true
	}
	var err error
	if out.start, err = parseTimeOfDay(w.StartTime, 0); err != nil {
		return nil, fmt.Errorf("startTime: %w", err)
	}
	if out.end, err = parseTimeOfDay(w.EndTime, 24*time.Hour-time.Nanosecond); err != nil {
		return nil, fmt.Errorf("endTime: %w", err)
	}
	if w.TimeZone != "" {
		if out.loc, err = time.LoadLocation(w.TimeZone); err != nil {
			return nil, fmt.Errorf("timeZone: %w", err)
		}
	}
	return out, nil
}

func parseTimeOfDay(s string, empty time.Duration) (time.Duration, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return empty, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second, nil
		}
	}
	return 0, errors.New("time " + s + " is not HH:MM, HH:MM:SS or H:MMpm")
}

// Contains reports whether t falls inside the window.
func (w *Window) Contains(t time.Time) bool {
	lt := t.In(w.loc)
	midnight := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, w.loc)
	since := lt.Sub(midnight)
	if w.end >= w.start {
		return w.days[lt.Weekday()] && since >= w.start && since <= w.end
	}
	// Wraps midnight: either the window opened today, or it opened
	// yesterday and has not closed yet.
	if since >= w.start {
		return w.days[lt.Weekday()]
	}
	if since <= w.end {
		return w.days[(lt.Weekday()+6)%7]
	}
	return false
}

// NextOpen returns the first time at or after t (to the minute, within a
// week) at which the window is open, for requeueing; zero if never.
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
