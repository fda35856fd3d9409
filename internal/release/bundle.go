package release

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Bundle header (see the package doc).
const (
	BundleMagic  = "KESTREL-BUNDLE\n"
	BundleFormat = 1
	headerSize   = len(BundleMagic) + 4 + 4
)

// WriteBundle signs m with key and writes the bundle to w: the header, the
// signed manifest, then each part from files (part name -> path), hashed
// while copied; a part that is not what m says fails the write.
func WriteBundle(w io.Writer, m *Manifest, key ed25519.PrivateKey, files map[string]string) error {
	env, err := Sign(m, key)
	if err != nil {
		return err
	}
	head := make([]byte, headerSize, headerSize+len(env))
	copy(head, BundleMagic)
	binary.BigEndian.PutUint32(head[len(BundleMagic):], BundleFormat)
	binary.BigEndian.PutUint32(head[len(BundleMagic)+4:], uint32(len(env)))
	if _, err := w.Write(append(head, env...)); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	for _, p := range m.Parts {
		if err := copyPart(w, p, files[p.Name]); err != nil {
			return fmt.Errorf("write bundle: part %s: %w", p.Name, err)
		}
	}
	return nil
}

func copyPart(w io.Writer, p Part, path string) error {
	if path == "" {
		return errors.New("no file given")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), f)
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != p.Size || sum != p.SHA256 {
		return fmt.Errorf("%s is %d bytes with sha256 %s, the manifest says %d and %s", path, n, sum, p.Size, p.SHA256)
	}
	return nil
}

// OpenBundle verifies the bundle at src: a file path, "-" for stdin, or
// an http(s) URL (ctx bounds the request; reading stdin cannot be
// interrupted). The signature is checked before any part is read, then
// every part's size and sha256. A file is read in place (once here, again
// by Open); a stream is never stored whole: each part is staged as its own
// file under stageDir while it is hashed, and any failure (bad signature,
// bad part, truncation, a dying connection, bytes beyond the manifest's
// parts) removes what was staged, leaving stageDir as it was.
func OpenBundle(ctx context.Context, src string, keys []ed25519.PublicKey, stageDir string) (*Release, error) {
	name := "bundle " + src
	switch {
	case src == "-":
		return openStream(name, bufio.NewReaderSize(os.Stdin, 1<<20), -1, keys, stageDir)
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		// A client of its own: no global state, and no overall timeout (a
		// rootfs over a slow link takes long; ctx bounds it).
		resp, err := (&http.Client{}).Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: HTTP %s", name, resp.Status)
		}
		return openStream(name, bufio.NewReaderSize(resp.Body, 1<<20), resp.ContentLength, keys, stageDir)
	default:
		if st, err := os.Stat(src); err == nil && !st.Mode().IsRegular() {
			// A named pipe or a device (/dev/stdin): read once, as a stream.
			f, err := os.Open(src)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			defer f.Close()
			return openStream(name, bufio.NewReaderSize(f, 1<<20), -1, keys, stageDir)
		}
		return openFile(name, src, keys)
	}
}

// readHead reads the header and the signed manifest, and verifies it.
func readHead(r io.Reader, keys []ed25519.PublicKey) (*Manifest, int64, error) {
	head := make([]byte, headerSize)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, 0, fmt.Errorf("header: %w", eofIsTruncation(err))
	}
	if string(head[:len(BundleMagic)]) != BundleMagic {
		return nil, 0, errors.New("not a Kestrel bundle (bad magic)")
	}
	if v := binary.BigEndian.Uint32(head[len(BundleMagic):]); v != BundleFormat {
		return nil, 0, fmt.Errorf("bundle format %d: this kestrel reads format %d", v, BundleFormat)
	}
	n := binary.BigEndian.Uint32(head[len(BundleMagic)+4:])
	if n > MaxEnvelope {
		return nil, 0, fmt.Errorf("signed manifest of %d bytes, at most %d", n, MaxEnvelope)
	}
	env := make([]byte, n)
	if _, err := io.ReadFull(r, env); err != nil {
		return nil, 0, fmt.Errorf("signed manifest: %w", eofIsTruncation(err))
	}
	m, err := Verify(env, keys)
	if err != nil {
		return nil, 0, err
	}
	return m, int64(headerSize) + int64(n), nil
}

// size is the bundle's total size as its manifest describes it.
func size(m *Manifest, head int64) int64 {
	for _, p := range m.Parts {
		head += p.Size
	}
	return head
}

func openFile(name, path string, keys []ed25519.PublicKey) (*Release, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, head, err := readHead(bufio.NewReader(io.LimitReader(f, int64(headerSize)+MaxEnvelope)), keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkLength(m, head, st.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	offsets := map[string]int64{}
	off := head
	for _, p := range m.Parts {
		offsets[p.Name] = off
		off += p.Size
	}
	r := &Release{m: m, name: name, open: func(p Part) (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return sectionCloser{io.NewSectionReader(f, offsets[p.Name], p.Size), f}, nil
	}}
	for _, p := range m.Parts {
		if err := r.check(p); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// checkLength compares a known bundle length with the manifest's.
func checkLength(m *Manifest, head, length int64) error {
	want := size(m, head)
	switch {
	case length > want:
		return fmt.Errorf("%d bytes, %d more than the manifest's parts (refused unread)", length, length-want)
	case length >= 0 && length < want:
		return fmt.Errorf("truncated: %d bytes, the manifest's parts end at %d", length, want)
	}
	return nil
}

type sectionCloser struct {
	*io.SectionReader
	io.Closer
}

// openStream stages each part of the bundle read from r under a new
// directory in stageDir; length is the stream's length when known (HTTP
// Content-Length), else -1.
func openStream(name string, r io.Reader, length int64, keys []ed25519.PublicKey, stageDir string) (_ *Release, err error) {
	m, head, err := readHead(r, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkLength(m, head, length); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	staged, err := os.MkdirTemp(stageDir, ".kestrel-release-")
	if err != nil {
		return nil, fmt.Errorf("%s: stage: %w", name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staged)
		}
	}()
	for _, p := range m.Parts {
		if err := stagePart(name, r, p, filepath.Join(staged, p.Name)); err != nil {
			return nil, err
		}
	}
	var one [1]byte
	switch n, err := io.ReadFull(r, one[:]); {
	case n > 0:
		return nil, fmt.Errorf("%s: data after the last part (refused unread)", name)
	case err != io.EOF:
		return nil, fmt.Errorf("%s: after the last part: %w", name, err)
	}
	return &Release{m: m, name: name, staged: staged, open: func(p Part) (io.ReadCloser, error) {
		return os.Open(filepath.Join(staged, p.Name))
	}}, nil
}

// stagePart copies exactly p's bytes from r into path, verifying them.
func stagePart(name string, r io.Reader, p Part, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: stage part %s: %w", name, p.Name, err)
	}
	vr := &verifyingReader{r: io.NopCloser(r), left: p.Size, h: sha256.New(), part: p, name: name}
	_, err = io.Copy(f, vr)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: stage part %s: %w", name, p.Name, cerr)
	}
	return err
}

func eofIsTruncation(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("truncated")
	}
	return err
}
