package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInitramfsPhaseCommand runs the subcommand stage 1 executes on a new
// root with a config on the ESP: its kestrel.sysctl lands in the new
// root's /proc/sys. Bad arguments are a usage error.
func TestInitramfsPhaseCommand(t *testing.T) {
	root, esp := t.TempDir(), t.TempDir()
	for p, data := range map[string]string{
		filepath.Join(root, "proc/sys/vm/swappiness"): "60\n",
		filepath.Join(root, "proc/cmdline"):           "console=ttyS0 kestrel.slot=a\n",
		filepath.Join(esp, "config.yaml"):             "kestrel:\n  sysctl: {vm.swappiness: \"17\"}\n",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if rc := runInitramfsPhase([]string{"-new-root", root, "-esp", esp}); rc != 0 {
		t.Fatalf("exit %d", rc)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "proc/sys/vm/swappiness")); string(got) != "17\n" {
		t.Errorf("swappiness %q, want the ESP config's 17", got)
	}
	for _, args := range [][]string{nil, {"-esp", esp}, {"-new-root", root, "extra"}} {
		if rc := runInitramfsPhase(args); rc != 2 {
			t.Errorf("%q: exit %d, want 2", args, rc)
		}
	}
}
