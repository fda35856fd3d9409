// Package status is the node's state as stage 2 reports it: on the console
// once at boot (a human summary and the machine-readable layout.ReadyMarker
// line that tests and benchmarks parse) and on demand for `kestrel status`.
//
// The ready line's format is an interface: keys are stable, values have no
// spaces, times are seconds of guest CLOCK_BOOTTIME with three decimals:
//
//	KESTREL-READY version=0.1.0 slot=a ip=10.0.2.15 kernel=1.230 stage1=0.210 stage2=0.400 ready=1.840
//
// kernel is boot until stage 1 started, stage1 and stage2 are durations
// (stage2 from the end of stage 1, so switch_root and loading /sbin/init
// count in it), ready is the absolute time stage 2 declared the node
// ready: kernel + stage1 + stage2 = ready, to the millisecond.
package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
)

// Status of a running node.
type Status struct {
	Version  string              `json:"version"`
	Slot     string              `json:"slot"`
	Hostname string              `json:"hostname"`
	Addrs    []string            `json:"addrs"` // "eth0 10.0.2.15/24"
	IP       string              `json:"ip"`    // first IPv4 address, "" if none
	Kernel   time.Duration       `json:"kernel_ns"`
	Stage1   time.Duration       `json:"stage1_ns"`
	Stage2   time.Duration       `json:"stage2_ns"`
	Ready    time.Duration       `json:"ready_ns"` // 0 until ready
	Uptime   time.Duration       `json:"uptime_ns"`
	Services []supervisor.Status `json:"services"`
	Warnings []string            `json:"warnings,omitempty"`
	// PowerButton is how many input devices PID 1 watches for a power
	// key: nil until it started (its drivers load after ready).
	PowerButton *int `json:"power_button_devices,omitempty"`
	// BootHealth is whether this boot was declared good (k3s healthy in
	// time); nil until something declared it.
	BootHealth *boothealth.Record `json:"boot_health,omitempty"`
	// Slots are both A/B slots as the boot loader's entries describe them
	// (the CLI reads the ESP); BadReleases the releases this node rolled
	// back from.
	Slots       []bootslot.Slot     `json:"slots,omitempty"`
	BadReleases []badrelease.Record `json:"bad_releases,omitempty"`
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ReadyLine is the machine-readable line, starting with layout.ReadyMarker.
func (s Status) ReadyLine() string {
	return fmt.Sprintf("%s version=%s slot=%s ip=%s kernel=%s stage1=%s stage2=%s ready=%s",
		layout.ReadyMarker, field(s.Version), field(s.Slot), orNone(s.IP),
		boottime.Seconds(s.Kernel), boottime.Seconds(s.Stage1), boottime.Seconds(s.Stage2), boottime.Seconds(s.Ready))
}

func field(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Join(strings.Fields(s), "_")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// Summary is the one line a person reads on the console.
func (s Status) Summary() string {
	return fmt.Sprintf("Kestrel %s slot %s ready: ip %s, host %s — kernel %s, stage1 %s, stage2 %s (ready at %s guest time)",
		s.Version, s.Slot, orNone(s.IP), s.Hostname, secs(s.Kernel), secs(s.Stage1), secs(s.Stage2), secs(s.Ready))
}

// Render writes the `kestrel status` report. now dates the services'
// next restart.
func (s Status) Render(w io.Writer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "version:\t%s\n", s.Version)
	fmt.Fprintf(tw, "slot:\t%s\n", s.Slot)
	fmt.Fprintf(tw, "hostname:\t%s\n", s.Hostname)
	fmt.Fprintf(tw, "ip:\t%s\n", orNone(s.IP))
	for _, a := range s.Addrs {
		fmt.Fprintf(tw, "\t%s\n", a)
	}
	ready := "not yet"
	if s.Ready > 0 {
		ready = secs(s.Ready)
	}
	fmt.Fprintf(tw, "boot:\tkernel %s, stage1 %s, stage2 %s, ready at %s\n", secs(s.Kernel), secs(s.Stage1), secs(s.Stage2), ready)
	fmt.Fprintf(tw, "uptime:\t%s\n", s.Uptime.Round(time.Second))
	switch {
	case s.PowerButton == nil:
		fmt.Fprintf(tw, "power button:\tnot watched yet\n")
	case *s.PowerButton == 0:
		fmt.Fprintf(tw, "power button:\tnone (no input devices)\n")
	default:
		fmt.Fprintf(tw, "power button:\twatched on %d input devices\n", *s.PowerButton)
	}
	if h := s.BootHealth; h != nil {
		line := h.String()
		if h.State == boothealth.Pending && !h.Deadline.IsZero() {
			line += fmt.Sprintf(" (declared not good in %s)", h.Deadline.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(tw, "boot health:\t%s\n", line)
	}
	for _, sl := range s.Slots {
		fmt.Fprintf(tw, "slot %s:\t%s\n", sl.Name, SlotLine(sl))
	}
	for _, b := range s.BadReleases {
		fmt.Fprintf(tw, "rolled back from:\t%s (%s, %s)\n", b.Version, b.When.Format(time.RFC3339), b.Reason)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(tw, "warning:\t%s\n", warn)
	}
	tw.Flush()
	if len(s.Services) == 0 {
		_, err := fmt.Fprintln(w, "services: none")
		return err
	}
	fmt.Fprintln(w, "services:")
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tSTATE\tPID\tRESTARTS\tSINCE\tNOTE")
	for _, sv := range s.Services {
		pid, note := "-", sv.LastExit
		if sv.PID > 0 {
			pid = fmt.Sprint(sv.PID)
		}
		if sv.State == supervisor.Backoff && !sv.NextStart.IsZero() {
			note = fmt.Sprintf("restart in %s; last: %s", sv.NextStart.Sub(now).Round(100*time.Millisecond), sv.LastExit)
		}
		if sv.LogError != "" {
			note = strings.TrimPrefix(note+"; ", "; ") + "log not written: " + sv.LogError
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", sv.Name, sv.State, pid, sv.Restarts, sv.Since.Format(time.TimeOnly), note)
	}
	return tw.Flush()
}

// SlotLine describes one slot: its release, its standing and whether it
// is booted or boots next.
func SlotLine(sl bootslot.Slot) string {
	if sl.State == bootslot.Empty {
		line := "empty"
		if sl.Booted {
			line += ", booted (no boot entry)"
		}
		return line
	}
	line := sl.Version + " " + string(sl.State)
	switch sl.State {
	case bootslot.Trying:
		line += fmt.Sprintf(" (%d tries left)", sl.TriesLeft)
	case bootslot.Bad:
		line += " (no tries left)"
	}
	var tags []string
	if sl.Booted {
		tags = append(tags, "booted")
	}
	if sl.Next {
		tags = append(tags, "boots next")
	}
	if len(tags) > 0 {
		line += ", " + strings.Join(tags, ", ")
	}
	return line
}
