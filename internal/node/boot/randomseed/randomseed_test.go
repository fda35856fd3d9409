package randomseed

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

type fakeKernel struct {
	ready    bool
	credited int
	added    [][]byte
}

func (k *fakeKernel) AddEntropy(b []byte, bits int) error {
	k.added = append(k.added, append([]byte(nil), b...))
	k.credited += bits
	k.ready = k.credited >= 256
	return nil
}

func (k *fakeKernel) Read(b []byte, block bool) error {
	if !k.ready && !block {
		return errors.New("EAGAIN")
	}
	for i := range b {
		b[i] = byte(i + len(k.added))
	}
	return nil
}

func TestLoadSave(t *testing.T) {
	p := filepath.Join(t.TempDir(), "var", "lib", "kestrel", "random-seed")
	k := &fakeKernel{}
	// First boot: no seed, nothing credited, nothing written.
	if ok, err := Load(p, k); ok || err != nil {
		t.Fatalf("Load without seed = %v, %v", ok, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("a seed appeared without a ready CRNG")
	}
	// Stage 2 saves once the CRNG is ready.
	if err := Save(p, k); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(p)
	if st, _ := os.Stat(p); len(old) != Size || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed = %d bytes, mode %v", len(old), st.Mode())
	}
	// Next boot: credited in full, and replaced by a different seed.
	k2 := &fakeKernel{}
	if ok, err := Load(p, k2); !ok || err != nil || k2.credited != 256 {
		t.Fatalf("Load = %v, %v, credited %d", ok, err, k2.credited)
	}
	if now, _ := os.ReadFile(p); len(now) != Size || string(now) == string(old) {
		t.Error("seed not replaced after crediting")
	}
	// A short seed is dropped, not credited.
	os.WriteFile(p, []byte("short"), 0o600)
	k3 := &fakeKernel{}
	if ok, _ := Load(p, k3); ok || k3.credited != 0 {
		t.Error("short seed credited")
	}
}

// niceProbe is a Kernel whose blocking Read reports the nice value of the
// thread it runs on, from /proc/thread-self/stat.
type niceProbe struct{ nice chan string }

func (niceProbe) AddEntropy([]byte, int) error { return nil }

func (p niceProbe) Read(b []byte, block bool) error {
	st, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		p.nice <- err.Error()
		return err
	}
	// The fields after "(comm)": state is the 3rd field, nice the 19th.
	p.nice <- strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))[19-3]
	return nil
}

// TestWarmReadsAtLowestPriority: the kernel collects jitter in the thread
// that waits for the CRNG, so Warm's read must wait on a nice-19 thread
// and leave the caller's priority alone.
func TestWarmReadsAtLowestPriority(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := niceOf(t, "/proc/thread-self/stat")
	p := niceProbe{nice: make(chan string, 1)}
	Warm(p)
	select {
	case got := <-p.nice:
		if got != "19" {
			t.Errorf("Warm's read ran at nice %s, want 19", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Warm never read")
	}
	if after := niceOf(t, "/proc/thread-self/stat"); after != before {
		t.Errorf("the caller's thread went from nice %s to %s", before, after)
	}
}

func niceOf(t *testing.T, stat string) string {
	st, err := os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))[19-3]
}
