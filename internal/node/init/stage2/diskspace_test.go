package stage2

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A full state partition shows in the status as a warning, and the
// warning goes once space is freed.
func TestStatusReportsFullState(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=512k"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	defer unix.Unmount(state, unix.MNT_DETACH)
	sys := &System{root: root, Logf: t.Logf}
	if st := sys.status(0); len(st.Warnings) != 0 {
		t.Fatalf("empty state: warnings %q", st.Warnings)
	}
	filler := filepath.Join(state, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for _, err = f.Write(make([]byte, 4096)); err == nil; _, err = f.Write(bytes.Repeat([]byte{1}, 4096)) {
	}
	f.Close()
	st := sys.status(0)
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "state partition") || !strings.Contains(st.Warnings[0], "is full (100% used") {
		t.Errorf("full state: warnings %q", st.Warnings)
	}
	os.Remove(filler)
	if st := sys.status(0); len(st.Warnings) != 0 {
		t.Errorf("after freeing: warnings %q", st.Warnings)
	}
}
