package ubootab

import (
	"strings"
	"testing"
)

func TestStateNext(t *testing.T) {
	for _, tc := range []struct {
		name, file, next, render string
	}{
		{"fresh image", "AB_ORDER=a b\nAB_a=good\nAB_b=\n", "a", "AB_ORDER=a b\nAB_a=good\nAB_b=\n"},
		{"b on trial first", "AB_ORDER=b a\nAB_a=good\nAB_b=3\n", "b", "AB_ORDER=b a\nAB_a=good\nAB_b=3\n"},
		{"b exhausted", "AB_ORDER=b a\nAB_a=good\nAB_b=0\n", "a", "AB_ORDER=b a\nAB_a=good\nAB_b=0\n"},
		{"all exhausted: first with anything", "AB_ORDER=b a\nAB_a=0\nAB_b=0\n", "b", "AB_ORDER=b a\nAB_a=0\nAB_b=0\n"},
		{"written by env export -t", "AB_ORDER=a b\nAB_a=good\n\x00garbage", "a", "AB_ORDER=a b\nAB_a=good\nAB_b=\n"},
		{"no order: layout order", "AB_b=good\n", "b", "AB_ORDER=a b\nAB_a=\nAB_b=good\n"},
		{"nothing", "", "", "AB_ORDER=a b\nAB_a=\nAB_b=\n"},
		{"comments and unknown names", "# edited\nAB_ORDER=b x b\nAB_b=good\nOTHER=1\n", "b", "AB_ORDER=b a\nAB_a=\nAB_b=good\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseState([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(); got != tc.next {
				t.Errorf("Next() = %q, want %q", got, tc.next)
			}
			if got := string(s.Render()); got != tc.render {
				t.Errorf("Render() = %q, want %q", got, tc.render)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"AB_a=-1\n", `AB_a="-1"`},
		{"AB_b=often\n", `AB_b="often"`},
		{"AB_ORDER=a b\njunk\n", "line 2"},
	} {
		if _, err := ParseState([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseState(%q) = %v, want an error with %q", tc.file, err, tc.want)
		}
	}
	if _, err := ParseEntry([]byte("kestrel_version=1\n")); err == nil || !strings.Contains(err.Error(), "kestrel_args") {
		t.Errorf("entry without a command line: %v", err)
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := Entry{Version: "1.2.3", Cmdline: "console=ttyAMA0 kestrel.verity.roothash=ab kestrel.slot=b", Tries: 3}
	got, err := ParseEntry(e.Render())
	if err != nil || got != e {
		t.Errorf("ParseEntry(Render()) = %+v, %v; want %+v", got, err, e)
	}
	if p := EntryPath("b"); p != "/kestrel/b/entry.env" {
		t.Errorf("EntryPath(b) = %s", p)
	}
}

func TestScript(t *testing.T) {
	for _, cmd := range []string{"booti", "bootz"} {
		s, err := Script(cmd)
		if err != nil {
			t.Fatal(err)
		}
		text := string(s)
		for _, want := range []string{
			"env import -t ${kernel_addr_r} ${filesize}",
			"setexpr AB_a ${AB_a} - 1", "setexpr AB_b ${AB_b} - 1",
			"fatwrite ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} /kestrel/ab.env ${filesize}",
			cmd + " ${kernel_addr_r} ${kinitrd} ${kfdt}",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s script lacks %q", cmd, want)
			}
		}
		// The state is written back (only when a try was counted)
		// before the kernel overwrites ${kernel_addr_r}.
		if !strings.Contains(text, "setenv kslot a; setenv kwrite 1") || !strings.Contains(text, "if test -n \"${kwrite}\"; then") {
			t.Errorf("%s script does not write the state only after counting a try", cmd)
		}
		if strings.Index(text, "fatwrite") > strings.Index(text, "/vmlinuz") {
			t.Errorf("%s script loads the kernel before writing the state", cmd)
		}
	}
	if _, err := Script("bootm"); err == nil {
		t.Error("Script(bootm) succeeded")
	}
}
