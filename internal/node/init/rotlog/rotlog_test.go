package rotlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
