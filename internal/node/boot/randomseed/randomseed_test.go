package randomseed

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
