package netup

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestUpLeavesEnvironmentAlone runs Up (on an interface that does not
// exist, so it fails after switching u-root's rand to /dev/urandom) and
// checks that PID 1's environment, and so what a process it starts
// inherits, carries UROOT_NOHWRNG only if it did before.
const envNoHWRNG = "UROOT_NOHWRNG"

func TestUpLeavesEnvironmentAlone(t *testing.T) {
	tests := []struct {
		name   string
		preset string // "" : unset before Up
	}{
		{"unset before: unset after", ""},
		{"set on the kernel command line: kept", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envNoHWRNG, tt.preset) // restored after the test
			if tt.preset == "" {
				os.Unsetenv(envNoHWRNG)
			}
			_, err := Up(context.Background(), Config{Interfaces: []string{"kestrel-none0"}, Timeout: time.Second})
			if err == nil || !strings.Contains(err.Error(), "kestrel-none0") {
				t.Fatalf("Up on a missing interface: %v", err)
			}
			v, set := os.LookupEnv(envNoHWRNG)
			if set != (tt.preset != "") || v != tt.preset {
				t.Errorf("after Up, %s = %q (set %v), want %q", envNoHWRNG, v, set, tt.preset)
			}
			out, err := exec.Command("env").Output() // inherits PID 1's environment
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(out), envNoHWRNG+"="); got != (tt.preset != "") {
				t.Errorf("a child's environment has %s: %v, want %v", envNoHWRNG, got, tt.preset != "")
			}
		})
	}
}
