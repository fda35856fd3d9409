package badrelease

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
)

func TestDetect(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	good := func(name, v string, booted bool) bootslot.Slot {
		return bootslot.Slot{Name: name, Version: v, State: bootslot.Good, Booted: booted}
	}
	bad := bootslot.Slot{Name: "b", Version: "2.0", State: bootslot.Bad}
	for _, tc := range []struct {
		name  string
		slots []bootslot.Slot
		want  string
	}{
		{"both good", []bootslot.Slot{good("a", "1.0", true), good("b", "2.0", false)}, ""},
		{"b exhausted, a booted", []bootslot.Slot{good("a", "1.0", true), bad}, "2.0"},
		{"b trying", []bootslot.Slot{good("a", "1.0", true), {Name: "b", Version: "2.0", State: bootslot.Trying, TriesLeft: 1}}, ""},
		{"nothing booted (unknown slot)", []bootslot.Slot{good("a", "1.0", false), bad}, ""},
		{"same version in both", []bootslot.Slot{good("a", "2.0", true), bad}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "var/lib/kestrel/bad-releases.json")
			got, err := Detect(path, tc.slots, now)
			if err != nil || got != tc.want {
				t.Fatalf("Detect = %q, %v; want %q", got, err, tc.want)
			}
			again, err := Detect(path, tc.slots, now.Add(time.Hour))
			if err != nil || again != "" {
				t.Fatalf("second Detect = %q, %v; want nothing new", again, err)
			}
			rs, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (len(rs) != 1 || !Contains(rs, tc.want) || Latest(rs) != tc.want || !rs[0].When.Equal(now)) {
				t.Fatalf("records %+v", rs)
			}
			if tc.want != "" {
				if err := Forgive(path, tc.want); err != nil {
					t.Fatal(err)
				}
				if rs, _ := Load(path); Contains(rs, tc.want) {
					t.Fatalf("still bad after Forgive: %+v", rs)
				}
			}
		})
	}
}
