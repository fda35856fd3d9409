package watchdog

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// A machine without a watchdog is ErrNone, which callers skip silently;
// a device that is not a watchdog is an error naming it. (Arming a real
// one is the qemu i6300esb boot test's job: arming the host's would
// reset it.)
func TestOpen(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "watchdog"), time.Minute); !errors.Is(err, ErrNone) {
		t.Errorf("missing device: %v, want ErrNone", err)
	}
	d, err := Open("/dev/null", time.Minute)
	if err == nil || d == nil {
		t.Fatalf("/dev/null as a watchdog: %v, %v; want an armed-but-unknown dog and an error", d, err)
	}
	if err := d.Pet(); err != nil {
		t.Error(err)
	}
	if err := d.Disarm(); err != nil {
		t.Error(err)
	}
}
