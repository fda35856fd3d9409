package kcmdline

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, key, want string
		present             bool
	}{
		{"simple", "console=ttyS0,115200 kestrel.slot=a", "kestrel.slot", "a", true},
		{"trailing newline", "quiet kestrel.slot=b\n", "kestrel.slot", "b", true},
		{"absent", "console=ttyS0 quiet", "kestrel.slot", "", false},
		{"flag without value", "console=ttyS0 kestrel.debug", "kestrel.debug", "", true},
		{"last wins", "kestrel.slot=a kestrel.slot=b", "kestrel.slot", "b", true},
		{"quoted value", `kestrel.x="a b c" kestrel.slot=a`, "kestrel.x", "a b c", true},
		{"quoted whole param", `"kestrel.x=a b" y=1`, "kestrel.x", "a b", true},
		{"init args ignored", "kestrel.slot=a -- kestrel.slot=b", "kestrel.slot", "a", true},
		{"value with equals", "root=PARTLABEL=root-a", "root", "PARTLABEL=root-a", true},
		{"tabs and runs of spaces", "a=1\t\t  kestrel.slot=a   ", "kestrel.slot", "a", true},
		{"empty", "", "kestrel.slot", "", false},
		{"empty value", "kestrel.slot=", "kestrel.slot", "", true},
		{"prefix is not key", "kestrel.slotx=a", "kestrel.slot", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.in).Get(tc.key)
			if got != tc.want || ok != tc.present {
				t.Errorf("Parse(%q).Get(%q) = %q, %v; want %q, %v", tc.in, tc.key, got, ok, tc.want, tc.present)
			}
		})
	}
}

func TestValueAndPrefix(t *testing.T) {
	c := Parse("console=ttyS0 kestrel.slot=b kestrel.debug kestrel.slot=a other=1")
	if v := c.Value("kestrel.slot", "a"); v != "a" {
		t.Errorf("Value = %q", v)
	}
	if v := c.Value("missing", "def"); v != "def" {
		t.Errorf("Value default = %q", v)
	}
	got := c.WithPrefix("kestrel.")
	want := [][2]string{{"kestrel.slot", "a"}, {"kestrel.debug", ""}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("WithPrefix = %v, want %v", got, want)
	}
}

func TestRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(p, []byte("console=ttyS0,115200 kestrel.slot=a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get("kestrel.slot"); v != "a" {
		t.Errorf("slot = %q", v)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Read of a missing file succeeded")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`console=ttyS0 kestrel.slot=a "x=y z" -- init`)
	f.Fuzz(func(t *testing.T, s string) {
		c := Parse(s)
		for _, kv := range c.WithPrefix("") {
			if kv[0] == "" {
				t.Fatalf("empty key from %q", s)
			}
		}
	})
}
