package stage1

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/init/console"
)

// TestRunRefusesVerity: a malformed key set, and a well-formed one that
// cannot be opened (no device-mapper on the fake system), are both
// refused, never booted unverified, and the slot's entry is demoted.
func TestRunRefusesVerity(t *testing.T) {
	const hash = "6293c75d1911e67376b2c32d7e9f276a80497953f20deb4c3aa295684a9da40f"
	for _, tc := range []struct {
		name, cmdline string
		want          []string
		timeout       time.Duration
	}{
		{"partial keys", "kestrel.slot=a kestrel.verity.roothash=" + hash,
			[]string{"kestrel.verity.datablocks", "must all be given"}, console.DefaultRescueTimeout},
		{"bad hash", "kestrel.slot=a kestrel.verity.roothash=xyz kestrel.verity.datablocks=5 kestrel.verity.hashoffset=20480 kestrel.rescue_timeout=5",
			[]string{`"xyz"`, "64 hex digits"}, 5 * time.Second},
		{"no device-mapper", "kestrel.slot=a kestrel.verity.roothash=" + hash + " kestrel.verity.salt= kestrel.verity.datablocks=5 kestrel.verity.hashoffset=20480 kestrel.rescue_timeout=0",
			[]string{"set up dm-verity over", "vda2", "device-mapper control"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, calls, _ := fakeSystem(t, tc.cmdline, []string{"esp", "root-a", "root-b", "state"})
			entries := filepath.Join(e.Root, espStage, layout.ESPEntriesDir)
			os.MkdirAll(entries, 0o755)
			os.WriteFile(filepath.Join(entries, "kestrel-a.conf"), []byte("title a\n"), 0o644)
			e.SwitchRoot = func(string, string) error { t.Fatal("switched root"); return nil }
			err := Run(e)
			var r *RefusedError
			if !errors.As(err, &r) {
				t.Fatalf("Run: %v, want a RefusedError", err)
			}
			for _, w := range append(tc.want, "refusing to boot slot a", "kestrel-a+0-1.conf") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if r.RescueTimeout != tc.timeout {
				t.Errorf("rescue timeout %v, want %v", r.RescueTimeout, tc.timeout)
			}
			if _, err := os.Stat(filepath.Join(entries, "kestrel-a+0-1.conf")); err != nil {
				t.Errorf("entry not demoted: %v", err)
			}
			for _, c := range *calls {
				if strings.HasPrefix(c, "squashfs") {
					t.Errorf("mounted the root anyway: %s", c)
				}
				if strings.HasPrefix(c, "vfat") && !strings.Contains(c, filepath.Join(e.Root, espStage)) {
					t.Errorf("ESP mounted elsewhere: %s", c)
				}
			}
		})
	}
}

func TestRunUnverifiedSaysSo(t *testing.T) {
	e, _, _ := fakeSystem(t, "kestrel.slot=a", []string{"esp", "root-a", "root-b", "state"})
	e.SwitchRoot = func(string, string) error { return errors.New("test stops here") }
	Run(e)
	if c := e.Console.(interface{ String() string }).String(); !strings.Contains(c, "root vda2 is not verified") {
		t.Errorf("console does not say the root is unverified:\n%s", c)
	}
}
