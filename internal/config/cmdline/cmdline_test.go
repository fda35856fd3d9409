package cmdline

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/verity"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Param
	}{
		{"", nil},
		{"   \t\n", nil},
		{"quiet", []Param{{Key: "quiet", Bare: true}}},
		{"console=ttyS0,115200 root=PARTLABEL=root-a", []Param{{Key: "console", Value: "ttyS0,115200"}, {Key: "root", Value: "PARTLABEL=root-a", Offset: 21}}},
		{`kestrel.hostname="a b" x`, []Param{{Key: "kestrel.hostname", Value: "a b"}, {Key: "x", Bare: true, Offset: 23}}},
		{`"kestrel.hostname=a b"`, []Param{{Key: "kestrel.hostname", Value: "a b"}}},
		{`k="a"b"c d"`, []Param{{Key: "k", Value: "abc d"}}},
		{`k=`, []Param{{Key: "k", Value: ""}}},
		{`"a=b"=c`, []Param{{Key: "a=b", Value: "c"}}},
		{`k="unterminated x`, []Param{{Key: "k", Value: "unterminated x"}}},
		{"a  b\n", []Param{{Key: "a", Bare: true}, {Key: "b", Bare: true, Offset: 3}}},
		{"a -- init kestrel.hostname=x", []Param{{Key: "a", Bare: true}}},
		{`a "--" b`, []Param{{Key: "a", Bare: true}, {Key: "--", Bare: true, Offset: 2}, {Key: "b", Bare: true, Offset: 7}}},
	} {
		if got := Split(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q)\n got  %+v\n want %+v", tc.in, got, tc.want)
		}
	}
}

func TestConfigParams(t *testing.T) {
	got := ConfigParams(Split(`console=ttyS0 kestrel.slot=a kestrel.debug k3os.mode=live kestrel.hostname=h k3os.password=p kestrel.k3s.upgrade_controller kestrel. other.x=1`))
	want := []Param{
		{Key: "hostname", Value: "h", Offset: 58},
		{Key: "password", Value: "p", Offset: 77},
		{Key: "k3s.upgrade_controller", Value: "true", Bare: true, Offset: 93},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// A slot's boot entry carries the verity parameters: boot switches, never config.
	words := verity.Params{RootHash: strings.Repeat("ab", 32), Salt: "01", DataBlocks: 1, HashOffset: 4096}.CmdlineOptions()
	if got := ConfigParams(Split(strings.Join(words, " "))); len(got) != 0 {
		t.Errorf("verity keys read as config: %+v", got)
	}
	if v, ok := Lookup(Split("kestrel.slot=a kestrel.slot=b kestrel.debug"), "kestrel.slot"); !ok || v != "b" {
		t.Errorf("Lookup slot = %q %v", v, ok)
	}
	if v, ok := Lookup(Split("kestrel.debug"), "kestrel.debug"); !ok || v != "true" {
		t.Errorf("Lookup debug = %q %v", v, ok)
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{"", `a="b c" d`, `"x=y z"=1`, "kestrel.sysctl.vm.swappiness=1", "\"", "=", "a==b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range Split(s) {
			if p.Offset < 0 || p.Offset >= len(s) {
				t.Fatalf("offset %d out of range", p.Offset)
			}
		}
	})
}
