package rotlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRotate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log", "k3s.log")
	w, err := Open(p, 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	for name, want := range map[string]string{"": "gggg\n", ".1": "eeee\nffff\n", ".2": "cccc\ndddd\n"} {
		b, err := os.ReadFile(p + name)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(p + ".3"); !os.IsNotExist(err) {
		t.Error("kept more than 2 old files")
	}
	// Reopening continues the size count.
	w, _ = Open(p, 10, 2)
	w.Write([]byte("hhhhhhhh\n"))
	w.Close()
	if b, _ := os.ReadFile(p + ".1"); !strings.HasPrefix(string(b), "gggg") {
		t.Errorf("reopen did not rotate: .1 = %q", b)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after close succeeded")
	}
}

// A failed rotation must not close the log for good: once the obstacle is
// gone, the next write after RetryEvery opens it again.
func TestRetryAfterFailedRotation(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k3s.log")
	now := time.Unix(1000, 0)
	w, err := Open(p, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.Now = func() time.Time { return now }
	defer w.Close()
	if _, err := w.Write([]byte("aaaaaaaa\n")); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory where the rotated file goes: neither removed
	// nor renamed over, so the rotation fails (as root too).
	if err := os.MkdirAll(filepath.Join(p+".1", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("bbbbbbbb\n")); err == nil {
		t.Fatal("rotation into a directory succeeded")
	}
	if w.Err() == nil || w.Dropped() != 9 {
		t.Errorf("Err, Dropped = %v, %d; want an error and 9", w.Err(), w.Dropped())
	}
	os.RemoveAll(p + ".1")
	if _, err := w.Write([]byte("cccccccc\n")); err == nil {
		t.Error("reopened before RetryEvery")
	}
	now = now.Add(RetryEvery)
	if _, err := w.Write([]byte("dddddddd\n")); err != nil {
		t.Fatalf("write after the obstacle went: %v", err)
	}
	if w.Err() != nil || w.Dropped() != 0 {
		t.Errorf("after recovery Err, Dropped = %v, %d", w.Err(), w.Dropped())
	}
	for name, want := range map[string]string{"": "dddddddd\n", ".1": "aaaaaaaa\n"} {
		if b, err := os.ReadFile(p + name); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}
}
