package release

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// ManifestFile is the signed manifest's name in a release directory.
const ManifestFile = "release.json"

// Release is a verified release: its signature checked and every part's
// size and sha256 matched against the manifest before OpenDir or
// OpenBundle returned it.
type Release struct {
	m      *Manifest
	name   string                              // "bundle X" or "release X", for errors
	open   func(p Part) (io.ReadCloser, error) // the part's raw bytes
	staged string                              // directory Close removes ("": none)
}

// Manifest is the verified manifest.
func (r *Release) Manifest() *Manifest { return r.m }

// Open returns part's bytes, exactly those verified: it hashes them again
// while they are read, and the read that reaches the end returns an error
// instead of io.EOF if they differ from the manifest (the file changed
// since it was verified). Never trust bytes before that final read.
func (r *Release) Open(part string) (io.ReadCloser, error) {
	p, ok := r.m.Part(part)
	if !ok {
		return nil, fmt.Errorf("%s: no part %q", r.name, part)
	}
	rc, err := r.open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: part %s: %w", r.name, p.Name, err)
	}
	return &verifyingReader{r: rc, left: p.Size, h: sha256.New(), part: p, name: r.name}, nil
}

// Close removes anything staged for the release.
func (r *Release) Close() error {
	if r.staged == "" {
		return nil
	}
	err := os.RemoveAll(r.staged)
	r.staged = ""
	return err
}

// OpenDir verifies the release in dir (release.json and one file per
// part, as in the upgrade image's /kestrel/release). The parts are read
// once here to verify them and again by Open; nothing is copied.
func OpenDir(dir string, keys []ed25519.PublicKey) (*Release, error) {
	name := "release " + dir
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	env, err := io.ReadAll(io.LimitReader(f, MaxEnvelope+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, ManifestFile, err)
	}
	m, err := Verify(env, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r := &Release{m: m, name: name, open: func(p Part) (io.ReadCloser, error) {
		return os.Open(filepath.Join(dir, p.Name))
	}}
	for _, p := range m.Parts {
		if err := r.check(p); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// check reads part p through open and compares size and sha256.
func (r *Release) check(p Part) error {
	rc, err := r.open(p)
	if err != nil {
		return fmt.Errorf("%s: part %s: %w", r.name, p.Name, err)
	}
	defer rc.Close()
	if f, ok := rc.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() != p.Size {
			return fmt.Errorf("%s: part %s: %d bytes, the manifest says %d", r.name, p.Name, st.Size(), p.Size)
		}
	}
	_, err = io.Copy(io.Discard, &verifyingReader{r: rc, left: p.Size, h: sha256.New(), part: p, name: r.name})
	return err
}

// verifyingReader passes through part's bytes, at most its size, and
// turns the end into an error when they are short or hash differently.
type verifyingReader struct {
	r    io.ReadCloser
	left int64
	h    hash.Hash
	part Part
	name string
	err  error // sticky end result
}

func (v *verifyingReader) Read(b []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.left == 0 {
		v.err = v.finish()
		return 0, v.err
	}
	if int64(len(b)) > v.left {
		b = b[:v.left]
	}
	n, err := v.r.Read(b)
	v.h.Write(b[:n])
	v.left -= int64(n)
	switch {
	case v.left == 0:
		v.err = v.finish()
		if v.err == io.EOF && n > 0 {
			return n, nil // io.EOF on the next call
		}
	case err == io.EOF:
		v.err = fmt.Errorf("%s: part %s: truncated: %d of %d bytes", v.name, v.part.Name, v.part.Size-v.left, v.part.Size)
	case err != nil:
		v.err = fmt.Errorf("%s: part %s: %w", v.name, v.part.Name, err)
	}
	return n, v.err
}

// finish is io.EOF when the bytes read hash as the manifest says.
func (v *verifyingReader) finish() error {
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.part.SHA256 {
		return fmt.Errorf("%s: part %s: sha256 mismatch (got %s, manifest %s)", v.name, v.part.Name, got, v.part.SHA256)
	}
	return io.EOF
}

func (v *verifyingReader) Close() error { return v.r.Close() }
