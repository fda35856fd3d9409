package runcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "order")
	var log bytes.Buffer
	r := Runner{Log: &log, Env: []string{DefaultPath, "GREETING=hi"}, Dir: dir}
	err := r.Run(context.Background(), "boot_cmd", []string{
		"echo one >> " + marker,
		"echo $GREETING; echo to-stderr >&2; printf 'no newline'",
		"exit 3",
		"echo two >> " + marker + "; pwd",
		"/nonexistent/command",
		"kill -9 $$",
	})
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, want := range []string{`boot_cmd[2] "exit 3": exit status 3`, `boot_cmd[4] "/nonexistent/command": exit status 127`, `boot_cmd[5] "kill -9 $$": killed by`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "boot_cmd[0]") || strings.Contains(err.Error(), "boot_cmd[3]") {
		t.Errorf("successful commands reported: %v", err)
	}
	got, _ := os.ReadFile(marker)
	if string(got) != "one\ntwo\n" {
		t.Errorf("commands did not all run in order: %q", got)
	}
	for _, want := range []string{
		"boot_cmd[0]: $ echo one",
		"boot_cmd[1]: hi\n",
		"boot_cmd[1]: to-stderr\n",
		"boot_cmd[1]: no newline\n",
		"boot_cmd[2]: failed after",
		"boot_cmd[3]: " + dir + "\n",
		"boot_cmd[3]: ok",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestTimeoutKillsGroup(t *testing.T) {
	var log bytes.Buffer
	r := Runner{Log: &log, Timeout: 300 * time.Millisecond}
	start := time.Now()
	err := r.Run(context.Background(), "run_cmd", []string{"sleep 30 & sleep 30", "echo after"})
	if err == nil || !strings.Contains(err.Error(), "run_cmd[0]") || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("timeout not enforced: %v", time.Since(start))
	}
	if !strings.Contains(log.String(), "run_cmd[1]: after") {
		t.Errorf("the list stopped at a timeout:\n%s", log.String())
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Runner{}.Run(ctx, "init_cmd", []string{"true"})
	if err == nil || !strings.Contains(err.Error(), "stopped before [0]") {
		t.Errorf("error %v", err)
	}
	if err := (Runner{}).Run(context.Background(), "init_cmd", nil); err != nil {
		t.Errorf("empty list: %v", err)
	}
}

// TestUnderReaper runs a list the way PID 1 does, with a reaper collecting
// every child through wait4(-1).
func TestUnderReaper(t *testing.T) {
	rp := reaper.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rp.Loop(ctx)
	var log bytes.Buffer
	err := Runner{Log: &log, Reaper: rp}.Run(ctx, "run_cmd", []string{"echo one", "exit 2", "echo three"})
	if err == nil || !strings.Contains(err.Error(), `run_cmd[1] "exit 2": exit status 2`) || strings.Count(err.Error(), "run_cmd[") != 1 {
		t.Errorf("error %v", err)
	}
	for _, want := range []string{"run_cmd[0]: one\n", "run_cmd[2]: three\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

// No runner goes without a deadline: an unset (or negative) Timeout is
// DefaultTimeout.
func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		timeout, want time.Duration
	}{{0, DefaultTimeout}, {-time.Second, DefaultTimeout}, {time.Second, time.Second}} {
		if got := (Runner{Timeout: tc.timeout}).Limit(); got != tc.want {
			t.Errorf("Limit with Timeout %v = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}
