package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/kestrel-os/kestrel/internal/layout"
)

func TestCommandTable(t *testing.T) {
	for _, name := range []string{"status", "version", "poweroff", "reboot", "halt"} {
		if _, ok := commands[name]; !ok {
			t.Errorf("command %q is not registered", name)
		}
	}
	if code := runCLI([]string{"no-such-command"}); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if code := runCLI(nil); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
	if code := runCLI([]string{"help"}); code != 0 {
		t.Errorf("help: exit %d, want 0", code)
	}
	if code := runCLI([]string{"version"}); code != 0 {
		t.Errorf("version: exit %d", code)
	}
	if code := runCLI([]string{"poweroff", "now"}); code != 2 {
		t.Errorf("poweroff with an argument: exit %d, want 2", code)
	}
}

// TestCommAfterSelfExec runs this test binary again through
// layout.SelfExe, with argv[0] /usr/bin/kestrel as sshd's spec has it:
// init renames the process from "exe" to "kestrel".
func TestCommAfterSelfExec(t *testing.T) {
	if os.Getenv("KESTREL_TEST_PRINT_COMM") != "" {
		b, _ := os.ReadFile("/proc/self/comm")
		fmt.Print(string(b))
		os.Exit(0)
	}
	cmd := exec.Command(layout.SelfExe, "-test.run=^TestCommAfterSelfExec$")
	cmd.Args[0] = layout.KestrelBin
	cmd.Env = append(os.Environ(), "KESTREL_TEST_PRINT_COMM=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := string(out); got != "kestrel\n" {
		t.Errorf("exec'd through %s as %s, the process is named %q, want \"kestrel\\n\"", layout.SelfExe, layout.KestrelBin, got)
	}
}
