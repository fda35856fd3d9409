package kcmdline

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// TestParse splits lines into parameters. The cases marked "kernel:" are
// where the two parsers this package replaced disagreed, or where one of
// them differed from the kernel's next_arg; the kernel's reading is the
// expectation.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Cmdline
	}{
		{"empty", "", nil},
		{"only whitespace", "   \t\n\v\f\r", nil},
		{"bare", "quiet", Cmdline{{Key: "quiet", Bare: true}}},
		{"value with equals", "console=ttyS0,115200 root=PARTLABEL=root-a",
			Cmdline{{Key: "console", Value: "ttyS0,115200"}, {Key: "root", Value: "PARTLABEL=root-a", Offset: 21}}},
		{"trailing newline", "quiet kestrel.slot=b\n", Cmdline{{Key: "quiet", Bare: true}, {Key: "kestrel.slot", Value: "b", Offset: 6}}},
		{"tabs and runs of spaces", "a=1\t\t  kestrel.slot=a   ", Cmdline{{Key: "a", Value: "1"}, {Key: "kestrel.slot", Value: "a", Offset: 7}}},
		{"quoted value", `kestrel.hostname="a b" x`, Cmdline{{Key: "kestrel.hostname", Value: "a b"}, {Key: "x", Bare: true, Offset: 23}}},
		{"quoted whole parameter", `"kestrel.hostname=a b" y=1`, Cmdline{{Key: "kestrel.hostname", Value: "a b"}, {Key: "y", Value: "1", Offset: 23}}},
		{"kernel: quoted bare parameter loses its quotes", `"a b"`, Cmdline{{Key: "a b", Bare: true}}},
		{"empty value", "kestrel.slot=", Cmdline{{Key: "kestrel.slot"}}},
		{"empty quoted value", `k=""`, Cmdline{{Key: "k"}}},
		{"lone quote as value", `k="`, Cmdline{{Key: "k"}}},
		{"unterminated quote runs to the end", `k="unterminated x`, Cmdline{{Key: "k", Value: "unterminated x"}}},
		{"kernel: inner quotes stay", `k="a"b"c d"`, Cmdline{{Key: "k", Value: `a"b"c d`}}},
		{"kernel: the first '=' splits even inside quotes", `"a=b"=c`, Cmdline{{Key: "a", Value: `b"=c`}}},
		{"kernel: an '=' at the start does not split", `=a=b`, Cmdline{{Key: "=a", Value: "b"}}},
		{"double equals", `a==b`, Cmdline{{Key: "a", Value: "=b"}}},
		{"empty key dropped", `"" a`, Cmdline{{Key: "a", Bare: true, Offset: 3}}},
		{"init args ignored", "a -- init kestrel.hostname=x", Cmdline{{Key: "a", Bare: true}}},
		{"kernel: a quoted -- ends too", `a "--" b`, Cmdline{{Key: "a", Bare: true}}},
		{"--=x is a parameter", `--=x b`, Cmdline{{Key: "--", Value: "x"}, {Key: "b", Bare: true, Offset: 5}}},
		{"repeats kept in order", "k3os.dns_nameserver=1.1.1.1 k3os.dns_nameserver=8.8.8.8",
			Cmdline{{Key: "k3os.dns_nameserver", Value: "1.1.1.1"}, {Key: "k3os.dns_nameserver", Value: "8.8.8.8", Offset: 28}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%q)\n got  %+v\n want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestLookups(t *testing.T) {
	c := Parse("console=ttyS0 kestrel.slot=b kestrel.debug kestrel.slot=a other=1 kestrel.empty=")
	for _, tc := range []struct {
		key, want string
		present   bool
	}{
		{"kestrel.slot", "a", true}, // last wins
		{"kestrel.debug", "", true},
		{"kestrel.empty", "", true},
		{"kestrel.missing", "", false},
		{"kestrel.slo", "", false}, // a prefix is not a key
	} {
		if v, ok := c.Get(tc.key); v != tc.want || ok != tc.present {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tc.key, v, ok, tc.want, tc.present)
		}
		if c.Has(tc.key) != tc.present {
			t.Errorf("Has(%q) = %v", tc.key, !tc.present)
		}
	}
	if v := c.Value("kestrel.slot", "x"); v != "a" {
		t.Errorf("Value = %q", v)
	}
	if v := c.Value("kestrel.empty", "def"); v != "def" {
		t.Errorf("Value of an empty key = %q, want the default", v)
	}
	if got := c.All("kestrel.slot"); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("All = %q", got)
	}
	var keys []string
	for _, p := range c.WithPrefix("kestrel.") {
		keys = append(keys, p.Key)
	}
	if want := []string{"kestrel.slot", "kestrel.debug", "kestrel.slot", "kestrel.empty"}; !slices.Equal(keys, want) {
		t.Errorf("WithPrefix keys = %q, want %q", keys, want)
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
	for _, s := range []string{"", `console=ttyS0 kestrel.slot=a "x=y z" -- init`, `a="b c" d`, `"x=y z"=1`,
		"kestrel.sysctl.vm.swappiness=1", `"`, `""`, "=", "a==b", `k="`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		last := -1
		for _, p := range Parse(s) {
			if p.Key == "" {
				t.Fatalf("empty key from %q", s)
			}
			if p.Offset <= last || p.Offset >= len(s) {
				t.Fatalf("offset %d out of order or range in %q", p.Offset, s)
			}
			last = p.Offset
			if p.Bare && p.Value != "" {
				t.Fatalf("bare %q with value %q", p.Key, p.Value)
			}
		}
	})
}
