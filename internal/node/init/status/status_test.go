package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
)

func TestLines(t *testing.T) {
	s := Status{Version: "0.1.0", Slot: "a", Hostname: "kestrel-563412", IP: "10.0.2.15",
		Kernel: 1230 * time.Millisecond, Stage1: 210 * time.Millisecond, Stage2: 400 * time.Millisecond, Ready: 1840 * time.Millisecond}
	if got, want := s.ReadyLine(), "KESTREL-READY version=0.1.0 slot=a ip=10.0.2.15 kernel=1.230 stage1=0.210 stage2=0.400 ready=1.840"; got != want {
		t.Errorf("ReadyLine =\n%s\nwant\n%s", got, want)
	}
	if got := s.Summary(); !strings.Contains(got, "Kestrel 0.1.0 slot a ready: ip 10.0.2.15") || !strings.Contains(got, "ready at 1.84s guest time") {
		t.Errorf("Summary = %s", got)
	}
	s.IP, s.Version = "", "1.0 beta"
	if got := s.ReadyLine(); !strings.Contains(got, " ip=none ") || !strings.Contains(got, "version=1.0_beta") {
		t.Errorf("ReadyLine without ip = %s", got)
	}
}

func TestRender(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s := Status{Version: "0.1.0", Slot: "b", IP: "10.0.2.15", Addrs: []string{"eth0 10.0.2.15/24"},
		Services: []supervisor.Status{
			{Name: "console", State: supervisor.Running, PID: 42, Since: now},
			{Name: "k3s", State: supervisor.Backoff, Restarts: 3, NextStart: now.Add(4 * time.Second), LastExit: "exit status 1", Since: now},
			{Name: "sshd", State: supervisor.Running, PID: 43, Since: now, LogError: "log /var/log/sshd.log: no space left on device"},
		}}
	var b bytes.Buffer
	if err := s.Render(&b, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"slot:", "b\n", "eth0 10.0.2.15/24", "ready at not yet", "console", "42", "restart in 4s; last: exit status 1",
		"log not written: log /var/log/sshd.log: no space left on device"} {
		if !strings.Contains(out, want) {
			t.Errorf("Render lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderBootHealth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    *boothealth.Record
		want string
	}{
		{nil, ""},
		{&boothealth.Record{State: boothealth.Pending, Detail: "k3s server started", Deadline: now.Add(90 * time.Second)}, "pending: k3s server started (declared not good in 1m30s)"},
		{&boothealth.Record{State: boothealth.Good, Detail: "k3s agent healthy 3s after it started"}, "good: k3s agent healthy 3s after it started"},
		{&boothealth.Record{State: boothealth.NotGood, Detail: "k3s server not healthy within 20s"}, "NOT GOOD: k3s server not healthy within 20s"},
	} {
		var b bytes.Buffer
		Status{BootHealth: tc.h}.Render(&b, now)
		line := renderedLine(b.String(), "boot health:")
		if line != tc.want {
			t.Errorf("boot health line %q, want %q", line, tc.want)
		}
	}
}

func TestRenderPowerButton(t *testing.T) {
	zero, two := 0, 2
	for _, tc := range []struct {
		n    *int
		want string
	}{
		{nil, "not watched yet"},
		{&zero, "none (no input devices)"},
		{&two, "watched on 2 input devices"},
	} {
		var b bytes.Buffer
		Status{PowerButton: tc.n}.Render(&b, time.Now())
		line := renderedLine(b.String(), "power button:")
		if line != tc.want {
			t.Errorf("power button line %q, want %q", line, tc.want)
		}
	}
}

// renderedLine is what Render wrote after key ("boot health:") on the
// line that starts with it, or "" when there is none.
func renderedLine(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}
