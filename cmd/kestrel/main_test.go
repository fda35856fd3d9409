package main

import "testing"

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
