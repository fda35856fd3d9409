package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTzdataLinked checks that the controller binary carries the tz
// database: its image has no /usr/share/zoneinfo, and a Plan with
// timeZone: Europe/Berlin must still load there. The host running the
// test has zoneinfo, so loading a zone here would prove nothing; the
// package list of the real build does.
func TestTzdataLinked(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "time/tzdata" {
			return
		}
	}
	t.Fatal("cmd/upgrade-controller does not link time/tzdata: non-UTC spec.window.timeZone values fail in its image")
}
