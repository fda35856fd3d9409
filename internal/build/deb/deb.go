// Package deb fetches pinned Debian binary packages with apt and unpacks
// their data archive into a cache directory, for the image builder.
//
// Fetching is `apt-get download pkg:arch=version` run in the cache
// directory, so it uses the host's apt sources, proxy and keyring: the
// host must list the suite the pins come from, and a foreign architecture
// must have been added with `dpkg --add-architecture`. A .deb is trusted
// only when its sha256 is one apt's (signed) metadata gives for the pinned
// version (`apt-cache show`): a cached file that no longer matches is
// fetched again, and a package apt has no record of is refused. When apt
// has no record yet, Fetch runs `apt-get update` once and asks again.
//
// Unpacking reads the .deb in Go (an ar archive holding data.tar.xz,
// data.tar.zst, data.tar.gz or an uncompressed data.tar) and writes
// through an os.Root on the destination, so no entry can land outside it:
// not by "../" (names are cleaned as if absolute first) and not through a
// symlink the archive made earlier (a symlink whose target lies outside is
// created as a link, but writing through it is an error). Deliberately
// left out: maintainer scripts are never run, control data is ignored,
// device nodes and other special files are skipped, and ownership is not
// kept (everything belongs to whoever runs the builder; the image writers
// make it root's). A package is unpacked once: the tree carries a stamp
// naming the .deb's sha256, and a later call with the same .deb returns at
// once.
package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/kestrel-os/kestrel/internal/progress"
)

// Package names one pinned package of one Debian architecture.
type Package struct {
	Name    string // e.g. "linux-image-6.1.0-50-amd64"
	Version string // exact Debian version, e.g. "6.1.176-1"
	Arch    string // Debian architecture: amd64, arm64, armhf
}

func (p Package) String() string { return p.Name + ":" + p.Arch + "=" + p.Version }

// FileName is the name apt-get download gives the .deb (an epoch's colon
// is written %3a).
func (p Package) FileName() string {
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch)
}

// Fetch returns the path of the package's .deb in dir, downloading it with
// apt-get when it is not there yet or when the cached file's sha256 is not
// one apt's metadata gives for the pinned version. A download is reported
// on log (size, time, rate); nil is quiet.
func Fetch(p Package, dir string, log *progress.Log) (string, error) {
	rec, err := aptRecord(p)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", p, err)
	}
	want := rec.sha256
	path := filepath.Join(dir, p.FileName())
	if _, err := os.Stat(path); err == nil {
		err := checkSHA256(path, want)
		if err == nil {
			return path, nil
		}
		// Truncated by an interrupted copy, damaged on disk or replaced:
		// never unpacked, fetched again below.
		log.Printf("deb %s: cached file refused, fetching it again: %v", p, err)
		if err := os.Remove(path); err != nil {
			return "", fmt.Errorf("fetch %s: remove stale %s: %w", p, path, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fetch %s: %w", p, err)
	}
	// apt-get writes into its working directory as it downloads: download
	// into a private directory and rename, so another build (or test) that
	// fetches the same package at the same time never sees half a .deb.
	tmp, err := os.MkdirTemp(dir, ".fetch-")
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", p, err)
	}
	defer os.RemoveAll(tmp)
	// apt-get runs to the end on its own: the transfer reports its size
	// before and its rate after, nothing in between.
	t := log.Transfer("deb "+p.String()+": apt-get download", rec.size)
	if out, err := run(tmp, "apt-get", "download", "-q", p.String()); err != nil {
		return "", fmt.Errorf("fetch %s: apt-get download: %w\n%s", p, err, out)
	}
	got := filepath.Join(tmp, p.FileName())
	if st, err := os.Stat(got); err == nil {
		t.Set(st.Size())
	}
	t.Done()
	// apt-get checks the hash itself; checked again so that what Fetch
	// returns is, in every path, a file it verified.
	if err := checkSHA256(got, want); err != nil {
		return "", fmt.Errorf("fetch %s: apt-get download: %w", p, err)
	}
	if err := os.Rename(got, path); err != nil {
		return "", fmt.Errorf("fetch %s: apt-get download succeeded but: %w", p, err)
	}
	return path, nil
}

// aptInfo is what apt's metadata says about one pinned package.
type aptInfo struct {
	sha256 []string // one per record; mirrors of one version agree, every one is accepted
	size   int64    // bytes of the .deb (0: not given)
}

// aptRecord returns apt's metadata for exactly this package, architecture
// and version. With no record, it runs `apt-get update` once, since a
// fresh machine may have no lists.
func aptRecord(p Package) (aptInfo, error) {
	rec, err := aptCacheShow(p)
	if err != nil || len(rec.sha256) > 0 {
		return rec, err
	}
	if out, upErr := run("", "apt-get", "update", "-q"); upErr != nil {
		return rec, fmt.Errorf("apt has no record of it and apt-get update failed: %w\n%s", upErr, out)
	}
	if rec, err = aptCacheShow(p); err != nil {
		return rec, err
	}
	if len(rec.sha256) == 0 {
		return rec, errors.New("apt's package lists have no record of this version (is its suite in the host's apt sources?)")
	}
	return rec, nil
}

// aptCacheShow reads the SHA256: and Size: fields of `apt-cache show
// pkg:arch=version`. An unknown package makes apt-cache fail, an unknown
// version prints nothing: both are "no record" here.
func aptCacheShow(p Package) (aptInfo, error) {
	var rec aptInfo
	out, err := exec.Command("apt-cache", "show", p.String()).Output()
	if errors.Is(err, exec.ErrNotFound) {
		return rec, fmt.Errorf("apt-cache: %w", err)
	}
	if err != nil {
		return rec, nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "SHA256:"); ok {
			rec.sha256 = append(rec.sha256, strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(line, "Size:"); ok {
			rec.size, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64) // only for progress lines
		}
	}
	return rec, nil
}

// checkSHA256 fails unless the file's sha256 is one of want.
func checkSHA256(path string, want []string) error {
	got, err := fileSHA256(path)
	if err != nil {
		return err
	}
	for _, w := range want {
		if got == w {
			return nil
		}
	}
	return fmt.Errorf("%s has sha256 %s, apt's metadata says %s", path, got, strings.Join(want, " or "))
}

func run(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stampName is the file inside an unpacked tree that records which .deb
// it came from.
const stampName = ".kestrel-deb-sha256"

// Unpack extracts the data archive of the .deb at debPath into dest and
// returns dest. If dest already holds an unpack of the same .deb (by
// sha256) it is left alone; otherwise it is replaced.
func Unpack(debPath, dest string) (string, error) {
	sum, err := fileSHA256(debPath)
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	if stamped(dest, sum) {
		return dest, nil
	}
	// Unpack next to dest and rename, so an interrupted unpack never looks
	// complete; a private name, so that two builds may unpack at once.
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), filepath.Base(dest)+".partial-")
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	defer os.RemoveAll(tmp) // only left to remove when something failed
	f, err := os.Open(debPath)
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	defer f.Close()
	if err := extractData(f, tmp); err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, stampName), []byte(sum), 0o644); err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	if stamped(dest, sum) {
		return dest, nil // another build finished the same unpack first
	}
	if err := os.RemoveAll(dest); err != nil {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	if err := os.Rename(tmp, dest); err != nil && !stamped(dest, sum) {
		return "", fmt.Errorf("unpack %s: %w", debPath, err)
	}
	return dest, nil
}

// stamped tells whether dir holds a complete unpack of the .deb with sha256 sum.
func stamped(dir, sum string) bool {
	old, err := os.ReadFile(filepath.Join(dir, stampName))
	return err == nil && string(old) == sum
}

// FetchUnpack is Fetch followed by Unpack into <dir>/<name>_<version>_<arch>/.
func FetchUnpack(p Package, dir string, log *progress.Log) (string, error) {
	debPath, err := Fetch(p, dir, log)
	if err != nil {
		return "", err
	}
	return Unpack(debPath, strings.TrimSuffix(debPath, ".deb"))
}

// extractData finds the data.tar.* member of the ar archive r and unpacks
// it into dest.
func extractData(r io.Reader, dest string) error {
	ar, err := newArReader(r)
	if err != nil {
		return err
	}
	for {
		name, member, err := ar.next()
		if errors.Is(err, io.EOF) {
			return errors.New("no data.tar member")
		}
		if err != nil {
			return err
		}
		if !strings.HasPrefix(name, "data.tar") {
			continue
		}
		dr, err := decompressor(name, member)
		if err != nil {
			return err
		}
		return untar(dr, dest)
	}
}

func decompressor(name string, r io.Reader) (io.Reader, error) {
	switch filepath.Ext(name) {
	case ".tar":
		return r, nil
	case ".xz":
		return xz.NewReader(r)
	case ".zst":
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case ".gz":
		return gzip.NewReader(r)
	}
	return nil, fmt.Errorf("data member %s: unknown compression", name)
}

// untar writes regular files, directories, symlinks and hard links of the
// tar stream under dest, through an os.Root so that nothing is written
// outside it. Symlink targets are kept as they are: they are resolved in
// the image, and never followed here out of dest.
func untar(r io.Reader, dest string) error {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read data.tar: %w", err)
		}
		if err := extract(root, h, tr); err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
}

// extract writes one tar entry, whose body is r, into root.
func extract(root *os.Root, h *tar.Header, r io.Reader) error {
	name := rel(h.Name)
	mode := os.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		return root.Chmod(name, mode|0o700)
	case tar.TypeReg:
		if err := makeWay(root, name); err != nil {
			return err
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case tar.TypeSymlink:
		if err := makeWay(root, name); err != nil {
			return err
		}
		return root.Symlink(h.Linkname, name)
	case tar.TypeLink:
		if err := makeWay(root, name); err != nil {
			return err
		}
		return root.Link(rel(h.Linkname), name)
	}
	// Device nodes, FIFOs: no Debian package we use ships any.
	return nil
}

// rel maps an archive name to a name relative to the destination: cleaned
// as an absolute path first, so "../" can never climb out ("./" is ".").
func rel(name string) string {
	r := strings.TrimPrefix(filepath.Clean("/"+name), "/")
	if r == "" {
		return "."
	}
	return r
}

// makeWay makes way for a new non-directory entry at name: its parent
// directories exist, and whatever non-directory was there (a later entry
// of the same name wins, as with tar) is removed rather than written
// through, so a symlink left there is never followed.
func makeWay(root *os.Root, name string) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if st, err := root.Lstat(name); err == nil && !st.IsDir() {
		return root.Remove(name)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// arReader reads the common ar format that dpkg writes: a "!<arch>\n"
// magic, then members with a 60-byte text header, bodies padded to even
// length. It is hand-written because the format is that small and no ar
// reader is in the module graph; GNU long names and BSD extended names are
// not supported (dpkg never writes them for .deb members).
type arReader struct {
	r    io.Reader
	left int64 // unread bytes of the current member, including padding
}

func newArReader(r io.Reader) (*arReader, error) {
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, fmt.Errorf("read ar magic: %w", err)
	}
	if string(magic) != "!<arch>\n" {
		return nil, errors.New("not an ar archive (no !<arch> magic)")
	}
	return &arReader{r: r}, nil
}

// next skips what is left of the current member and returns the next
// member's name and a reader limited to its body.
func (a *arReader) next() (string, io.Reader, error) {
	if a.left > 0 {
		if _, err := io.CopyN(io.Discard, a.r, a.left); err != nil {
			return "", nil, fmt.Errorf("skip ar member: %w", err)
		}
	}
	hdr := make([]byte, 60)
	if _, err := io.ReadFull(a.r, hdr); err != nil {
		if errors.Is(err, io.EOF) {
			return "", nil, io.EOF
		}
		return "", nil, fmt.Errorf("read ar header: %w", err)
	}
	if !bytes.Equal(hdr[58:60], []byte("`\n")) {
		return "", nil, errors.New("corrupt ar header")
	}
	name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
	var size int64
	if _, err := fmt.Sscanf(strings.TrimSpace(string(hdr[48:58])), "%d", &size); err != nil {
		return "", nil, fmt.Errorf("ar member %s: bad size: %w", name, err)
	}
	a.left = size + size%2
	body := &countingReader{r: io.LimitReader(a.r, size), left: &a.left}
	return name, body, nil
}

// countingReader keeps arReader.left current as the member body is read.
type countingReader struct {
	r    io.Reader
	left *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.left -= int64(n)
	return n, err
}
