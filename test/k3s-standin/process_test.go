package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
)

// TestProcess runs the built stand-in as the supervisor will: SIGTERM stops
// it with status 0, a hanging one survives SIGTERM until SIGKILL, and a
// crashing one exits 1.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the stand-in")
	}
	bin := filepath.Join(t.TempDir(), "k3s")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The built binary is recognised, so a release build refuses it.
	if _, err := fetch.Fetch(context.Background(), fetch.Options{
		Pin: fetch.Pin{Version: "v0"}, Arch: "amd64", CacheDir: t.TempDir(),
		Getenv: func(k string) string { return map[string]string{fetch.EnvBinary: bin}[k] },
	}); err == nil || !strings.Contains(err.Error(), "stand-in") {
		t.Errorf("k3sfetch accepted the stand-in for a release image: %v", err)
	}

	tests := []struct {
		mode     string
		signal   syscall.Signal
		wantCode int  // exit code after the signal, -1: killed
		survives bool // still running 300ms after the signal
	}{
		{mode: "ok", signal: syscall.SIGTERM, wantCode: 0},
		{mode: "hang", signal: syscall.SIGTERM, survives: true, wantCode: -1},
		{mode: "crash-after=0.2", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			root := t.TempDir()
			cmd := exec.Command(bin, "agent", "--node-name=x")
			cmd.Env = append(os.Environ(), "K3S_STANDIN_ROOT="+root, "K3S_STANDIN_MODE="+tt.mode, "K3S_STANDIN_AGENT_ADDR=127.0.0.1:0")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// Wait until it has recorded itself (it is then serving).
			for i := 0; i < 250; i++ {
				if _, err := os.Stat(filepath.Join(root, RecordFile)); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tt.signal != 0 {
				cmd.Process.Signal(tt.signal)
			}
			var err error
			select {
			case err = <-done:
				if tt.survives {
					t.Fatalf("exited after %v: %v\n%s", tt.signal, err, out.String())
				}
			case <-time.After(300 * time.Millisecond):
				if !tt.survives && tt.signal != 0 {
					t.Fatalf("still running after %v\n%s", tt.signal, out.String())
				}
				if tt.survives {
					cmd.Process.Kill()
				}
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("did not exit\n%s", out.String())
				}
			}
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, out.String())
			}
			if !strings.Contains(out.String(), "TEST STAND-IN, NOT k3s") {
				t.Errorf("output does not say it is a stand-in:\n%s", out.String())
			}
		})
	}
}
