package bootslot

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// esp writes entry files (name -> version) as the builder would and
// returns the ESP directory.
func espDir(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ed := filepath.Join(dir, layout.ESPEntriesDir)
	os.MkdirAll(ed, 0o755)
	for name, v := range entries {
		slot := strings.TrimPrefix(name, layout.ESPEntryNamePrefix)[:1]
		e := bls.Entry{Slot: slot, Version: v, Options: []string{"console=ttyS0", "quiet"}}
		if err := os.WriteFile(filepath.Join(ed, name), e.Render(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	des, _ := os.ReadDir(filepath.Join(dir, layout.ESPEntriesDir))
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func summary(t *testing.T, c Chain) string {
	t.Helper()
	slots, err := c.Slots()
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, s := range slots {
		p := s.Name + ":" + string(s.State)
		if s.Version != "" {
			p += "@" + s.Version
		}
		if s.State == Trying {
			p += "(" + string(rune('0'+s.TriesLeft)) + ")"
		}
		if s.Next {
			p += "*"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func TestSlots(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries map[string]string
		want    string
	}{
		{"fresh image", map[string]string{"kestrel-a.conf": "1.0"}, "a:good@1.0* b:empty"},
		{"b on trial", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+3.conf": "2.0"}, "a:good@1.0* b:trying@2.0(3)"},
		{"b tried twice", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+1-2.conf": "2.0"}, "a:good@1.0* b:trying@2.0(1)"},
		{"b exhausted", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+0-3.conf": "2.0"}, "a:good@1.0* b:bad@2.0"},
		{"both bad", map[string]string{"kestrel-a+0-1.conf": "1.0", "kestrel-b+0-3.conf": "2.0"}, "a:trying@1.0(0) b:bad@2.0"},
		{"crash left two entries for b", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+0-3.conf": "2.0", "kestrel-b.conf": "2.0"}, "a:good@1.0* b:good@2.0"},
		{"foreign files ignored", map[string]string{"kestrel-a.conf": "1.0", "kestrel-z.conf": "9", "other.conf": "1"}, "a:good@1.0* b:empty"},
		{"a booted on its last try", map[string]string{"kestrel-a+0-3.conf": "2.0", "kestrel-b.conf": "1.0"}, "a:trying@2.0(0) b:good@1.0*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summary(t, BLS{ESP: espDir(t, tc.entries), Booted: "a"}); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestUpgradeCycle walks the changes an upgrade makes, in order, checking
// after each one what the loader would boot.
func TestUpgradeCycle(t *testing.T) {
	dir := espDir(t, map[string]string{"kestrel-a.conf": "1.0"})
	c := BLS{ESP: dir, Booted: "a"}
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"forget b", func() error { return c.Forget("b") }, "a:good@1.0* b:empty"},
		{"offer b", func() error {
			return c.Offer(bls.Entry{Slot: "b", Version: "2.0", Options: []string{"console=ttyS0"}}, DefaultTries)
		}, "a:good@1.0 b:trying@2.0(3)*"},
		{"booted b: mark good", func() error { c.Booted = "b"; return c.MarkGood("b") }, "a:good@1.0 b:good@2.0*"},
		{"rollback to a", func() error { return c.Prefer("a") }, "a:good@1.0* b:good@2.0"},
		{"back to b", func() error { return c.Prefer("b") }, "a:good@1.0 b:good@2.0*"},
		{"demote b", func() error { c.Booted = "a"; _, _, err := c.Demote("b"); return err }, "a:good@1.0* b:bad@2.0"},
	}
	entryA := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, layout.ESPEntriesDir, "kestrel-a.conf"))
		return string(b)
	}
	before := entryA()
	for _, s := range steps {
		if s.name == "booted b: mark good" && entryA() != before {
			// Offer never rewrites the running slot's entry: on FAT a
			// rename is two writes, and a cut could cost the good entry.
			t.Fatalf("offering b rewrote a's entry:\n%s", entryA())
		}
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := summary(t, c); got != s.want {
			t.Fatalf("after %s: got %q, want %q (files %v)", s.name, got, s.want, files(t, dir))
		}
	}
	if got := files(t, dir); !slices.Equal(got, []string{"kestrel-a.conf", "kestrel-b+0-1.conf"}) {
		t.Errorf("files %v", got)
	}
	// The entry keeps its command line through every rewrite, and the
	// slot key exactly once.
	data, _ := os.ReadFile(filepath.Join(dir, layout.ESPEntriesDir, "kestrel-a.conf"))
	if !strings.Contains(string(data), "options console=ttyS0 quiet kestrel.slot=a\n") || strings.Count(string(data), "sort-key ") != 1 {
		t.Errorf("kestrel-a.conf:\n%s", data)
	}
}

func TestRefusals(t *testing.T) {
	dir := espDir(t, map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+0-3.conf": "2.0"})
	c := BLS{ESP: dir, Booted: "a"}
	if err := c.Prefer("b"); err == nil || !strings.Contains(err.Error(), "slot b is bad") {
		t.Errorf("Prefer(bad slot) = %v", err)
	}
	if err := c.MarkGood("c"); err == nil {
		t.Error("MarkGood of an unknown slot succeeded")
	}
	c.Forget("b")
	if err := c.MarkGood("b"); err == nil || !strings.Contains(err.Error(), "no boot entry") {
		t.Errorf("MarkGood(empty) = %v", err)
	}
}

// TestDemote: the names an exhausted entry gets, from every starting name.
func TestDemote(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string // in loader/entries
		slot  string
		want  []string // entries afterwards, sorted
		err   string
	}{
		{"good entry", []string{"kestrel-a.conf", "kestrel-b.conf"}, "a", []string{"kestrel-a+0-1.conf", "kestrel-b.conf"}, ""},
		{"counted try", []string{"kestrel-a.conf", "kestrel-b+2-1.conf"}, "b", []string{"kestrel-a.conf", "kestrel-b+0-1.conf"}, ""},
		{"later try", []string{"kestrel-b+0-2.conf", "kestrel-a+1-2.conf"}, "a", []string{"kestrel-a+0-2.conf", "kestrel-b+0-2.conf"}, ""},
		{"uncounted tries", []string{"kestrel-a+3.conf"}, "a", []string{"kestrel-a+0-1.conf"}, ""},
		{"exhausted already", []string{"kestrel-a+0-3.conf"}, "a", []string{"kestrel-a+0-3.conf"}, ""},
		{"other names left alone", []string{"kestrel-ab.conf", "kestrel-a.conf.bak", "kestrel-a+x.conf", "other-a.conf"}, "a",
			[]string{"kestrel-a+x.conf", "kestrel-a.conf.bak", "kestrel-ab.conf", "other-a.conf"}, "no boot entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ed := filepath.Join(dir, layout.ESPEntriesDir)
			os.MkdirAll(ed, 0o755)
			for _, f := range tc.files {
				os.WriteFile(filepath.Join(ed, f), bls.Entry{Slot: tc.slot, Version: "1"}.Render(), 0o644)
			}
			_, _, err := BLS{ESP: dir, Booted: tc.slot}.Demote(tc.slot)
			if (err != nil) != (tc.err != "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
			got := files(t, dir)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("entries %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTake counts tries the way systemd-boot does: a slot offered with 3
// tries is taken three times, then it is exhausted and the good slot is
// the one taken, its entry untouched.
func TestTake(t *testing.T) {
	dir := espDir(t, map[string]string{"kestrel-a.conf": "1.0"})
	c := BLS{ESP: dir, Booted: "a"}
	if err := c.Offer(bls.Entry{Slot: "b", Version: "2.0", Options: []string{"console=ttyS0", "quiet"}}, DefaultTries); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		slot    string
		left    int
		entries []string
	}{
		{"b", 2, []string{"kestrel-a.conf", "kestrel-b+2-1.conf"}},
		{"b", 1, []string{"kestrel-a.conf", "kestrel-b+1-2.conf"}},
		{"b", 0, []string{"kestrel-a.conf", "kestrel-b+0-3.conf"}},
		{"a", 0, []string{"kestrel-a.conf", "kestrel-b+0-3.conf"}},
		{"a", 0, []string{"kestrel-a.conf", "kestrel-b+0-3.conf"}},
	} {
		s, err := c.Take()
		if err != nil {
			t.Fatal(err)
		}
		got := files(t, dir)
		slices.Sort(got)
		if s.Name != want.slot || s.TriesLeft != want.left || !slices.Equal(got, want.entries) {
			t.Fatalf("took %s with %d tries left, entries %v; want %s with %d, %v", s.Name, s.TriesLeft, got, want.slot, want.left, want.entries)
		}
		if !slices.Equal(s.Options, []string{"console=ttyS0", "quiet"}) {
			t.Errorf("options %q", s.Options)
		}
	}
}

func TestTakeNothingToBoot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries map[string]string
	}{
		{"no entries", map[string]string{}},
		{"every slot exhausted", map[string]string{"kestrel-a+0-3.conf": "1.0", "kestrel-b+0-3.conf": "2.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := espDir(t, tc.entries)
			before := files(t, dir)
			if s, err := (BLS{ESP: dir, Booted: "b"}).Take(); err == nil {
				t.Fatalf("took slot %s, want an error", s.Name)
			}
			if got := files(t, dir); !slices.Equal(got, before) {
				t.Errorf("entries %v, want them unchanged (%v)", got, before)
			}
		})
	}
}
