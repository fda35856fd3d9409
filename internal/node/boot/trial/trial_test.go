package trial

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
)

func TestTrial(t *testing.T) {
	for _, tc := range []struct {
		name       string
		entries    map[string]string // file -> version
		good       bool              // declared good (else not good)
		wantSlotB  bootslot.State
		wantReboot bool
		wantBad    string
	}{
		{"trial passes", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+2-1.conf": "2.0"}, true, bootslot.Good, false, ""},
		{"trial fails: reboot", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+2-1.conf": "2.0"}, false, bootslot.Trying, true, ""},
		{"last try fails: reboot", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+0-3.conf": "2.0"}, false, bootslot.Trying, true, ""},
		{"last try passes", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b+0-3.conf": "2.0"}, true, bootslot.Good, false, ""},
		{"good slot, k3s unhealthy: stays up", map[string]string{"kestrel-a.conf": "1.0", "kestrel-b.conf": "2.0"}, false, bootslot.Good, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			esp := filepath.Join(root, "esp")
			os.MkdirAll(filepath.Join(esp, layout.ESPEntriesDir), 0o755)
			for f, v := range tc.entries {
				e := bls.Entry{Slot: f[len("kestrel-") : len("kestrel-")+1], Version: v}
				os.WriteFile(filepath.Join(esp, layout.ESPEntriesDir, f), e.Render(), 0o644)
			}
			reboots := 0
			tr := &Trial{Chain: bootslot.BLS{ESP: esp, Booted: "b"}, Booted: "b", Root: root, Now: time.Now,
				Logf: t.Logf, Warn: t.Logf, Reboot: func() { reboots++ }}
			if _, err := tr.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr.CheckRoot(context.Background()) // root is not on dm: passes
			if tc.good {
				if err := tr.markGood(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				tr.NotGood("k3s not healthy within 20s")
				tr.NotGood("again") // a second verdict reboots no more
			}
			slots, _ := tr.Chain.Slots()
			if slots[1].State != tc.wantSlotB {
				t.Errorf("slot b is %s, want %s", slots[1].State, tc.wantSlotB)
			}
			if (reboots == 1) != tc.wantReboot || reboots > 1 {
				t.Errorf("%d reboots, want reboot=%v", reboots, tc.wantReboot)
			}
		})
	}
}

// TestStartRecordsRollback: booting a with b's tries exhausted records b's
// release as bad.
func TestStartRecordsRollback(t *testing.T) {
	root := t.TempDir()
	esp := filepath.Join(root, "esp")
	os.MkdirAll(filepath.Join(esp, layout.ESPEntriesDir), 0o755)
	os.WriteFile(filepath.Join(esp, layout.ESPEntriesDir, "kestrel-a.conf"), bls.Entry{Slot: "a", Version: "1.0"}.Render(), 0o644)
	os.WriteFile(filepath.Join(esp, layout.ESPEntriesDir, "kestrel-b+0-3.conf"), bls.Entry{Slot: "b", Version: "2.0"}.Render(), 0o644)
	var warned []string
	tr := &Trial{Chain: bootslot.BLS{ESP: esp, Booted: "a"}, Booted: "a", Root: root, Now: time.Now,
		Logf: t.Logf, Warn: func(f string, a ...any) { warned = append(warned, f) }, Reboot: func() {}}
	bad, err := tr.Start(context.Background())
	if err != nil || bad != "2.0" {
		t.Fatalf("Start = %q, %v", bad, err)
	}
	rs, _ := badrelease.Load(filepath.Join(root, badrelease.Path))
	if !badrelease.Contains(rs, "2.0") || len(warned) != 1 {
		t.Errorf("records %+v, warnings %v", rs, warned)
	}
}
