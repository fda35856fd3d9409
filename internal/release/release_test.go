package release

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kestrel-os/kestrel/internal/verity"
)

// fixture is a release on disk: real part files (the rootfs a real verity
// image over random data), its manifest and a key pair.
type fixture struct {
	dir   string
	files map[string]string
	data  map[string][]byte
	m     *Manifest
	pub   ed25519.PublicKey
	priv  ed25519.PrivateKey
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureSized(t, 7_001, 5_000, 30_000)
}

// newFixtureSized is a fixture with parts of the given sizes (the rootfs
// is the verity image of squashSize random bytes).
func newFixtureSized(t testing.TB, kernelSize, initrdSize, squashSize int) *fixture {
	t.Helper()
	fx := &fixture{dir: t.TempDir(), files: map[string]string{}, data: map[string][]byte{}}
	privPath, pubPath, err := GenerateKeys(filepath.Join(fx.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if fx.priv, err = LoadPrivateKey(privPath); err != nil {
		t.Fatal(err)
	}
	if fx.pub, err = LoadPublicKey(pubPath); err != nil {
		t.Fatal(err)
	}
	squash := random(squashSize)
	var rootfs bytes.Buffer
	vp, err := verity.Write(&rootfs, bytes.NewReader(squash), []byte("salt"))
	if err != nil {
		t.Fatal(err)
	}
	fx.m = &Manifest{Format: Format, Version: "1.2.3", Arch: "amd64", Board: "pc", Verity: vp}
	for name, b := range map[string][]byte{PartKernel: random(kernelSize), PartInitrd: random(initrdSize), PartRootfs: rootfs.Bytes()} {
		fx.data[name] = b
		fx.files[name] = filepath.Join(fx.dir, name)
		writeFile(t, fx.files[name], b)
	}
	for _, name := range PartNames {
		p, err := NewPart(name, fx.files[name])
		if err != nil {
			t.Fatal(err)
		}
		fx.m.Parts = append(fx.m.Parts, p)
	}
	return fx
}

// bundle returns the bundle's bytes.
func (fx *fixture) bundle(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteBundle(&b, fx.m, fx.priv, fx.files); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// releaseDir writes a release directory and returns it.
func (fx *fixture) releaseDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "release")
	os.Mkdir(dir, 0o755)
	env, err := Sign(fx.m, fx.priv)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ManifestFile), env)
	for name, b := range fx.data {
		writeFile(t, filepath.Join(dir, name), b)
	}
	return dir
}

// partOffset is where part name starts in bundle b.
func partOffset(t *testing.T, b []byte, m *Manifest, name string) int {
	off := headerSize + int(binary.BigEndian.Uint32(b[len(BundleMagic)+4:]))
	for _, p := range m.Parts {
		if p.Name == name {
			return off
		}
		off += int(p.Size)
	}
	t.Fatalf("no part %s", name)
	return 0
}

// checkRelease reads every part back and compares it with the fixture.
func checkRelease(t *testing.T, fx *fixture, r *Release) {
	t.Helper()
	if got := r.Manifest(); got.Version != fx.m.Version || got.Verity != fx.m.Verity || len(got.Parts) != 3 {
		t.Errorf("manifest %+v", got)
	}
	for _, name := range PartNames {
		rc, err := r.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, fx.data[name]) {
			t.Errorf("part %s: %d bytes, %v", name, len(got), err)
		}
	}
	if _, err := r.Open("bootloader"); err == nil {
		t.Error("Open of an unknown part succeeded")
	}
}

func TestOpenBundleGood(t *testing.T) {
	fx := newFixture(t)
	b := fx.bundle(t)
	keys := []ed25519.PublicKey{fx.pub}
	ctx := context.Background()

	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "k.bundle")
		writeFile(t, path, b)
		stage := t.TempDir()
		r, err := OpenBundle(ctx, path, keys, stage)
		if err != nil {
			t.Fatal(err)
		}
		checkRelease(t, fx, r)
		if ls := list(t, stage); len(ls) != 0 {
			t.Errorf("a file bundle was staged: %v", ls)
		}
		// Bytes changed after verification fail the read at its end.
		off := partOffset(t, b, fx.m, PartRootfs)
		f, _ := os.OpenFile(path, os.O_WRONLY, 0)
		f.WriteAt([]byte{b[off+100] ^ 1}, int64(off+100))
		f.Close()
		rc, _ := r.Open(PartRootfs)
		if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "part rootfs: sha256 mismatch") {
			t.Errorf("read of a part changed after verification: %v", err)
		}
		r.Close()
	})

	t.Run("stdin", func(t *testing.T) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { pw.Write(b); pw.Close() }()
		old := os.Stdin
		os.Stdin = pr
		defer func() { os.Stdin = old; pr.Close() }()
		stage := t.TempDir()
		r, err := OpenBundle(ctx, "-", keys, stage)
		if err != nil {
			t.Fatal(err)
		}
		checkRelease(t, fx, r)
		if ls := list(t, stage); len(ls) != 1+len(PartNames) {
			t.Errorf("staged: %v", ls)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if ls := list(t, stage); len(ls) != 0 {
			t.Errorf("Close left %v", ls)
		}
	})

	t.Run("named pipe", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		go func() {
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err == nil {
				f.Write(b)
				f.Close()
			}
		}()
		stage := t.TempDir()
		r, err := OpenBundle(ctx, fifo, keys, stage)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		checkRelease(t, fx, r)
		if ls := list(t, stage); len(ls) != 1+len(PartNames) {
			t.Errorf("a pipe was not staged: %v", ls)
		}
	})

	t.Run("http", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
		defer srv.Close()
		stage := t.TempDir()
		r, err := OpenBundle(ctx, srv.URL+"/k.bundle", keys, stage)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		checkRelease(t, fx, r)
	})
}

func TestOpenBundleRefuses(t *testing.T) {
	fx := newFixture(t)
	good := fx.bundle(t)
	other := newFixture(t)
	otherSigned := other.bundle(t) // same layout, other key and parts

	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 0x20
		return b
	}
	envEnd := partOffset(t, good, fx.m, PartKernel)
	unsigned := func() []byte {
		var env envelope
		json.Unmarshal(good[headerSize:envEnd], &env)
		env.Signature = nil
		e, _ := json.Marshal(env)
		head := bytes.Clone(good[:headerSize])
		binary.BigEndian.PutUint32(head[len(BundleMagic)+4:], uint32(len(e)))
		return append(append(head, e...), good[envEnd:]...)
	}()
	tests := []struct {
		name   string
		bundle []byte
		want   string
	}{
		{"flipped byte in the manifest", flip(headerSize + (envEnd-headerSize)/2), "manifest"},
		{"flipped byte in vmlinuz", flip(partOffset(t, good, fx.m, PartKernel) + 5), "part vmlinuz: sha256 mismatch"},
		{"flipped byte in initrd", flip(partOffset(t, good, fx.m, PartInitrd) + 4_999), "part initrd: sha256 mismatch"},
		{"flipped byte in rootfs", flip(len(good) - 1), "part rootfs: sha256 mismatch"},
		{"truncated in a part", good[:len(good)-1000], "truncated"},
		{"truncated in the manifest", good[:envEnd-10], "truncated"},
		{"empty", nil, "truncated"},
		{"data after the last part", append(bytes.Clone(good), 0), "refused unread"},
		{"signed by another key", otherSigned, "signed by unknown key"},
		{"unsigned", unsigned, "not signed"},
		{"bad magic", flip(0), "not a Kestrel bundle"},
		{"newer format", flip(len(BundleMagic) + 3), "bundle format"},
	}
	keys := []ed25519.PublicKey{fx.pub}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stage := t.TempDir()
			writeFile(t, filepath.Join(stage, "keep"), []byte("x"))
			before := list(t, stage)
			path := filepath.Join(t.TempDir(), "k.bundle")
			writeFile(t, path, tt.bundle)
			for _, via := range []string{"file", "stream"} {
				var err error
				if via == "file" {
					_, err = OpenBundle(context.Background(), path, keys, stage)
				} else {
					_, err = openStream("bundle -", bufio.NewReader(bytes.NewReader(tt.bundle)), -1, keys, stage)
				}
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "bundle ") {
					t.Errorf("%s: error %v, want one containing %q", via, err, tt.want)
				}
				if after := list(t, stage); !equal(before, after) {
					t.Errorf("%s: stage dir changed: %v -> %v", via, before, after)
				}
			}
		})
	}
}

// TestOpenBundleHTTPDies serves the bundle over HTTP and cuts the
// connection part-way through a part (after the manifest, with an honest
// Content-Length), and once with a Content-Length bigger than the manifest.
func TestOpenBundleHTTPDies(t *testing.T) {
	fx := newFixture(t)
	good := fx.bundle(t)
	cut := partOffset(t, good, fx.m, PartRootfs) + 4096
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"connection closed mid-rootfs", func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n")
			buf.WriteString("Content-Length: " + strconv.Itoa(len(good)) + "\r\n\r\n")
			buf.Write(good[:cut])
			buf.Flush()
		}, "part rootfs: unexpected EOF"},
		{"longer than the manifest", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(good)+1))
			w.Write(append(bytes.Clone(good), 0))
		}, "1 more than the manifest's parts (refused unread)"},
		{"not found", http.NotFound, "HTTP 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			stage := t.TempDir()
			writeFile(t, filepath.Join(stage, "keep"), []byte("x"))
			before := list(t, stage)
			_, err := OpenBundle(context.Background(), srv.URL+"/k.bundle", []ed25519.PublicKey{fx.pub}, stage)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
			if after := list(t, stage); !equal(before, after) {
				t.Errorf("stage dir changed: %v -> %v", before, after)
			}
		})
	}
}

func TestOpenDir(t *testing.T) {
	fx := newFixture(t)
	keys := []ed25519.PublicKey{fx.pub}
	r, err := OpenDir(fx.releaseDir(t), keys)
	if err != nil {
		t.Fatal(err)
	}
	checkRelease(t, fx, r)
	r.Close()

	other := newFixture(t)
	tests := []struct {
		name   string
		change func(dir string)
		keys   []ed25519.PublicKey
		want   string
	}{
		{"flipped byte in the manifest", func(dir string) { flipFile(t, filepath.Join(dir, ManifestFile), 60) }, keys, "manifest"},
		{"flipped byte in vmlinuz", func(dir string) { flipFile(t, filepath.Join(dir, PartKernel), 0) }, keys, "part vmlinuz: sha256 mismatch"},
		{"flipped byte in initrd", func(dir string) { flipFile(t, filepath.Join(dir, PartInitrd), 1000) }, keys, "part initrd: sha256 mismatch"},
		{"flipped byte in rootfs", func(dir string) { flipFile(t, filepath.Join(dir, PartRootfs), 4096) }, keys, "part rootfs: sha256 mismatch"},
		{"rootfs longer", func(dir string) { appendFile(t, filepath.Join(dir, PartRootfs)) }, keys, fmt.Sprintf("part rootfs: %d bytes, the manifest says %d", fx.m.Parts[2].Size+1, fx.m.Parts[2].Size)},
		{"initrd missing", func(dir string) { os.Remove(filepath.Join(dir, PartInitrd)) }, keys, "part initrd: open"},
		{"no manifest", func(dir string) { os.Remove(filepath.Join(dir, ManifestFile)) }, keys, "release.json"},
		{"signed by another key", nil, []ed25519.PublicKey{other.pub}, "signed by unknown key"},
		{"no trusted keys", nil, nil, "no trusted release keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fx.releaseDir(t)
			if tt.change != nil {
				tt.change(dir)
			}
			_, err := OpenDir(dir, tt.keys)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "release "+dir) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	privPath, pubPath, err := GenerateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(privPath); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode().Perm())
	}
	if _, _, err := GenerateKeys(dir); err == nil {
		t.Error("GenerateKeys overwrote a key pair")
	}
	priv, _ := LoadPrivateKey(privPath)
	if pub, err := LoadPublicKey(pubPath); err != nil || KeyID(pub) != KeyID(priv.Public().(ed25519.PublicKey)) {
		t.Errorf("public key %s: %v", pubPath, err)
	}
	keys, err := LoadKeys(dir)
	if err != nil || len(keys) != 1 || !keys[0].Equal(priv.Public()) {
		t.Fatalf("LoadKeys: %v %v", keys, err)
	}
	for _, tt := range []struct {
		name, content, want string
	}{
		{"garbage.pub", "not a key\n", "garbage.pub: no PEM block"},
		{"private.pub", string(mustRead(t, privPath)), `PEM "PRIVATE KEY", want "PUBLIC KEY"`},
	} {
		bad := t.TempDir()
		writeFile(t, filepath.Join(bad, tt.name), []byte(tt.content))
		if _, err := LoadKeys(bad); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := LoadKeys(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.pub file") {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir: no error")
	}
}

func TestManifestValidate(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   string
	}{
		{"format", func(m *Manifest) { m.Format = 2 }, "manifest format 2"},
		{"version", func(m *Manifest) { m.Version = "../x" }, `manifest version "../x"`},
		{"no arch", func(m *Manifest) { m.Arch = "" }, "no arch"},
		{"parts order", func(m *Manifest) { m.Parts[0], m.Parts[1] = m.Parts[1], m.Parts[0] }, `part 0 is "initrd"`},
		{"missing part", func(m *Manifest) { m.Parts = m.Parts[:2] }, "2 parts"},
		{"sha256", func(m *Manifest) { m.Parts[1].SHA256 = strings.ToUpper(m.Parts[1].SHA256) }, "part initrd: sha256"},
		{"size", func(m *Manifest) { m.Parts[0].Size = 0 }, "part vmlinuz: size 0"},
		{"verity", func(m *Manifest) { m.Verity.RootHash = "x" }, "verity root hash"},
		{"rootfs size", func(m *Manifest) { m.Parts[2].Size += 4096 }, "its verity parameters say"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := *fx.m
			m.Parts = append([]Part(nil), fx.m.Parts...)
			tt.change(&m)
			if _, err := Sign(&m, fx.priv); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzVerifyManifest(f *testing.F) {
	fx := newFixture(f)
	env, err := Sign(fx.m, fx.priv)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add([]byte(`{"key_id":"","manifest":"","signature":""}`))
	keys := []ed25519.PublicKey{fx.pub}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Verify(data, keys)
		if err != nil {
			return
		}
		// Anything that verifies is a valid manifest that the key signed.
		if err := m.Validate(); err != nil {
			t.Fatalf("verified manifest does not validate: %v", err)
		}
	})
}

func FuzzReadBundle(f *testing.F) {
	// Small parts: the fuzzer mutates and minimizes whole inputs.
	fx := newFixtureSized(f, 100, 100, 5000)
	good := fx.bundle(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(BundleMagic + "\x00\x00\x00\x01\x00\x00\x00\x02{}"))
	keys := []ed25519.PublicKey{fx.pub}
	stage := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := openStream("bundle fuzz", bytes.NewReader(data), -1, keys, stage)
		if err != nil {
			if ls := list(t, stage); len(ls) != 0 {
				t.Fatalf("failed open left %v", ls)
			}
			return
		}
		// Only a bundle signed by the key opens: its parts are the good ones.
		for _, p := range r.Manifest().Parts {
			rc, _ := r.Open(p.Name)
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("verified part %s: %v", p.Name, err)
			}
			rc.Close()
		}
		r.Close()
	})
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flipFile(t *testing.T, path string, off int) {
	b := mustRead(t, path)
	b[off] ^= 0x20
	writeFile(t, path, b)
}

func appendFile(t *testing.T, path string) {
	writeFile(t, path, append(mustRead(t, path), 0))
}

func list(t testing.TB, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if p != dir {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }
