package bootslot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/ubootab"
)

// ubootESP writes a state file and entry files (slot -> version) as the
// builder and Offer would, and returns the ESP directory.
func ubootESP(t *testing.T, state string, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, layout.ESPSlotDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, layout.ESPBootScript), []byte("boot.scr"), 0o644); err != nil {
		t.Fatal(err)
	}
	if state != "missing" {
		if err := os.WriteFile(filepath.Join(dir, layout.ESPABState), []byte(state), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for slot, v := range entries {
		p := filepath.Join(dir, ubootab.EntryPath(slot))
		os.MkdirAll(filepath.Dir(p), 0o755)
		e := ubootab.Entry{Version: v, Cmdline: "console=ttyAMA0 quiet kestrel.slot=" + slot, Tries: DefaultTries}
		if err := os.WriteFile(p, e.Render(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestUBootSlots(t *testing.T) {
	both := map[string]string{"a": "1.0", "b": "2.0"}
	for _, tc := range []struct {
		name    string
		state   string
		entries map[string]string
		want    string
	}{
		{"fresh image", "AB_ORDER=a b\nAB_a=good\nAB_b=\n", map[string]string{"a": "1.0"}, "a:good@1.0* b:empty"},
		{"b offered", "AB_ORDER=b a\nAB_a=good\nAB_b=3\n", both, "a:good@1.0 b:trying@2.0(3)*"},
		{"b tried twice", "AB_ORDER=b a\nAB_a=good\nAB_b=1\n", both, "a:good@1.0 b:trying@2.0(1)*"},
		{"b exhausted: a next", "AB_ORDER=b a\nAB_a=good\nAB_b=0\n", both, "a:good@1.0* b:bad@2.0"},
		// U-Boot's env export ends the text with a NUL.
		{"as U-Boot wrote it", "AB_ORDER=b a\nAB_a=good\nAB_b=2\n\x00", both, "a:good@1.0 b:trying@2.0(2)*"},
		{"state names b, entry missing", "AB_ORDER=b a\nAB_a=good\nAB_b=3\n", map[string]string{"a": "1.0"}, "a:good@1.0* b:empty"},
		{"every slot exhausted: first in order anyway", "AB_ORDER=b a\nAB_a=0\nAB_b=0\n", both, "a:trying@1.0(0) b:bad@2.0*"},
		{"order incomplete", "AB_ORDER=b\nAB_a=good\nAB_b=\n", map[string]string{"a": "1.0"}, "a:good@1.0* b:empty"},
		// A cut during U-Boot's fatwrite: as the script, every slot with an entry is good.
		{"state file missing", "missing", map[string]string{"a": "1.0"}, "a:good@1.0* b:empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := ubootESP(t, tc.state, tc.entries)
			c := Open(dir, "a")
			if _, ok := c.(UBoot); !ok {
				t.Fatalf("Open picked %T for an ESP with %s", c, layout.ESPABState)
			}
			if got := summary(t, c); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestUBootBadState(t *testing.T) {
	dir := ubootESP(t, "AB_ORDER=a b\nAB_a=maybe\n", map[string]string{"a": "1.0"})
	_, err := UBoot{ESP: dir}.Slots()
	if err == nil || !strings.Contains(err.Error(), `AB_a="maybe"`) || !strings.Contains(err.Error(), layout.ESPABState) {
		t.Errorf("Slots() = %v, want an error naming the file and AB_a", err)
	}
	dir = ubootESP(t, "AB_ORDER=a b\nnonsense\n", nil)
	if _, err := (UBoot{ESP: dir}).Slots(); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Slots() = %v, want an error naming line 2", err)
	}
}

// TestUBootUpgradeCycle walks an upgrade's changes on the U-Boot chain:
// the same steps and outcomes as TestUpgradeCycle on BLS, and slot a's
// entry file is never rewritten.
func TestUBootUpgradeCycle(t *testing.T) {
	dir := ubootESP(t, string(ubootab.State{Order: layout.Slots, Slots: map[string]string{"a": ubootab.Good}}.Render()), map[string]string{"a": "1.0"})
	c := UBoot{ESP: dir, Booted: "a"}
	entryA := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, ubootab.EntryPath("a")))
		return string(b)
	}
	before := entryA()
	for _, s := range []struct {
		name string
		do   func() error
		want string
	}{
		{"forget b", func() error { return c.Forget("b") }, "a:good@1.0* b:empty"},
		{"offer b", func() error {
			return c.Offer(bls.Entry{Slot: "b", Version: "2.0", Options: []string{"console=ttyAMA0"}}, DefaultTries)
		}, "a:good@1.0 b:trying@2.0(3)*"},
		{"booted b: mark good", func() error { c.Booted = "b"; return c.MarkGood("b") }, "a:good@1.0 b:good@2.0*"},
		{"rollback to a", func() error { return c.Prefer("a") }, "a:good@1.0* b:good@2.0"},
		{"back to b", func() error { return c.Prefer("b") }, "a:good@1.0 b:good@2.0*"},
		{"demote b", func() error { c.Booted = "a"; _, _, err := c.Demote("b"); return err }, "a:good@1.0* b:bad@2.0"},
		{"forget b again", func() error { return c.Forget("b") }, "a:good@1.0* b:empty"},
	} {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := summary(t, c); got != s.want {
			st, _ := os.ReadFile(filepath.Join(dir, layout.ESPABState))
			t.Fatalf("after %s: got %q, want %q (state %q)", s.name, got, s.want, st)
		}
	}
	if entryA() != before {
		t.Errorf("slot a's entry was rewritten:\n%s", entryA())
	}
	if _, err := os.Stat(filepath.Join(dir, ubootab.EntryPath("b"))); !os.IsNotExist(err) {
		t.Errorf("forgotten slot b's entry is still there (%v)", err)
	}
}

// TestUBootOfferedEntry: what Offer writes is what the boot script reads:
// the whole command line with kestrel.slot, and the tries.
func TestUBootOfferedEntry(t *testing.T) {
	dir := ubootESP(t, "AB_ORDER=a b\nAB_a=good\n", map[string]string{"a": "1.0"})
	c := UBoot{ESP: dir, Booted: "a"}
	if err := c.Offer(bls.Entry{Slot: "b", Version: "2.0", Options: []string{"console=ttyAMA0", "kestrel.verity.roothash=ab"}}, 3); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, ubootab.EntryPath("b")))
	want := "kestrel_version=2.0\nkestrel_tries=3\nkestrel_args=console=ttyAMA0 kestrel.verity.roothash=ab kestrel.slot=b\n"
	if string(data) != want {
		t.Errorf("entry:\n%s\nwant:\n%s", data, want)
	}
	st, _ := os.ReadFile(filepath.Join(dir, layout.ESPABState))
	if string(st) != "AB_ORDER=b a\nAB_a=good\nAB_b=3\n" {
		t.Errorf("state:\n%s", st)
	}
	if err := c.Offer(bls.Entry{Slot: "b", Version: "2.0"}, ubootab.MaxTries+1); err == nil {
		t.Errorf("Offer with %d tries succeeded", ubootab.MaxTries+1)
	}
	if from, to, err := c.Demote("a"); err != nil || from != layout.ESPABState+" AB_a=good" || to != layout.ESPABState+" AB_a=0" {
		t.Errorf("Demote(a) = %q, %q, %v", from, to, err)
	}
}
