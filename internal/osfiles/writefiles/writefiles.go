// Package writefiles applies cloud-config write_files entries: it decodes
// each entry's content, resolves its owner against the target root's account
// databases, and writes it atomically (temporary file, fsync, rename) with
// its permissions, creating missing parent directories.
//
// Every entry is checked (path, encoding, content, owner, permissions)
// before anything is written, so a bad entry leaves the filesystem as it
// was; only I/O errors can leave a batch partly applied, and then each
// failing entry is reported.
//
// Limits: encodings are those of k3OS/cloud-init (none, b64/base64,
// gz/gzip, and the four gz+b64 spellings; YAML !!binary content arrives
// already decoded to bytes, config's job); decoded content is at most
// MaxSize; cloud-init's "append" and
// "defer" keys are not supported; created parent directories are 0755 and
// root-owned; root itself must be trusted (stage 2 passes "/").
//
// Symlinks are followed only where root alone could have made them: the
// path is walked down while each directory (below root) is owned by root
// and not group or world writable, up to the first one that is not (or
// the last existing one). From that directory on (a home directory, /tmp) the write goes
// through an os.Root opened on that directory, so a user's symlink cannot
// send the file, its owner or its mode outside the user's own tree.
package writefiles

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
	"github.com/kestrel-os/kestrel/internal/osfiles/passwd"
)

// File is one write_files entry as the config states it.
type File struct {
	Path        string // absolute path on the node
	Content     string
	Encoding    string // "", "none", "b64", "base64", "gz", "gzip", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"
	Owner       string // "user", "user:group" or numeric ids; default root:root
	Permissions string // octal, e.g. "0644", "755", "0o600"; default 0644
}

// MaxSize bounds the decoded content of one entry. Plain and base64
// content is already bounded by the size of a config source; gzip content
// is inflated at most this far (config validation decodes every entry, in
// PID 1), so a few KB of gzip cannot expand into gigabytes.
const MaxSize = 16 << 20

// DefaultPermissions is used when an entry gives none.
const DefaultPermissions = 0o644

// Write validates every file, then writes each under root. Errors name the
// entry's path and the key at fault; all of them are returned, joined.
func Write(root string, files []File) error {
	prepared := make([]prepared, 0, len(files))
	var errs []error
	for i, f := range files {
		p, err := prepare(root, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("write_files[%d]: %w", i, err))
			continue
		}
		prepared = append(prepared, p)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, p := range prepared {
		if err := writeUnder(root, p); err != nil {
			errs = append(errs, fmt.Errorf("write_files %s: %w", p.path, err))
		}
	}
	return errors.Join(errs...)
}

// writeUnder writes p through an os.Root on the deepest trusted directory
// above it (see the package comment).
func writeUnder(root string, p prepared) error {
	dir, rest, err := trustedDir(root, filepath.Dir(p.target))
	if err != nil {
		return err
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return atomicfile.WriteIn(r, filepath.Join(rest, filepath.Base(p.target)), p.data, p.mode, p.uid, p.gid)
}

// trustedDir splits dir (under root) into the directory to open as an
// os.Root, the first one a non-root user can change (its parents only
// root can) or the last existing one, and the rest of the path relative
// to it. A symlink met in a trusted directory is
// root's: the walk goes on from its target.
func trustedDir(root, dir string) (string, string, error) {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", "", fmt.Errorf("%s is not under %s", dir, root)
	}
	cur, rest := filepath.Clean(root), strings.Split(rel, string(filepath.Separator))
	if rel == "." {
		rest = nil
	}
	for links := 0; len(rest) > 0; {
		next := filepath.Join(cur, rest[0])
		fi, err := os.Lstat(next)
		if errors.Is(err, os.ErrNotExist) {
			break // created below cur, inside the os.Root
		}
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if links++; links > 40 {
				return "", "", fmt.Errorf("%s: too many levels of symbolic links", next)
			}
			target, err := filepath.EvalSymlinks(next)
			if err != nil {
				return "", "", err
			}
			// Start again from root along the target, checking each step.
			if rel, err = filepath.Rel(root, target); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return "", "", fmt.Errorf("%s leads to %s, outside %s", next, target, root)
			}
			cur, rest = filepath.Clean(root), append(strings.Split(rel, string(filepath.Separator)), rest[1:]...)
			if rel == "." {
				rest = rest[1:]
			}
			continue
		}
		if !fi.IsDir() {
			return "", "", fmt.Errorf("%s is not a directory", next)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		cur, rest = next, rest[1:]
		if !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			// Someone else's directory, in a parent only root can
			// change: the rest goes through an os.Root on it.
			break
		}
	}
	return cur, filepath.Join(append([]string{"."}, rest...)...), nil
}

// prepared is a validated entry ready to be written.
type prepared struct {
	path, target string
	data         []byte
	mode         os.FileMode
	uid, gid     int
}

func prepare(root string, f File) (prepared, error) {
	if f.Path == "" {
		return prepared{}, errors.New("path: empty")
	}
	if !filepath.IsAbs(f.Path) {
		return prepared{}, fmt.Errorf("%s: path: not absolute", f.Path)
	}
	clean := filepath.Clean(f.Path)
	if clean == "/" {
		return prepared{}, fmt.Errorf("%s: path: is the root directory", f.Path)
	}
	data, err := Decode(f.Content, f.Encoding)
	if err != nil {
		return prepared{}, fmt.Errorf("%s: %w", f.Path, err)
	}
	mode, err := ParseMode(f.Permissions)
	if err != nil {
		return prepared{}, fmt.Errorf("%s: permissions: %w", f.Path, err)
	}
	uid, gid, err := passwd.ResolveOwner(root, f.Owner)
	if err != nil {
		return prepared{}, fmt.Errorf("%s: owner %q: %w", f.Path, f.Owner, err)
	}
	return prepared{
		path:   f.Path,
		target: filepath.Join(root, clean),
		data:   data,
		mode:   mode,
		uid:    uid,
		gid:    gid,
	}, nil
}

// Decode returns content decoded per encoding. Errors name the key at fault
// ("encoding" or "content").
func Decode(content, encoding string) ([]byte, error) {
	var b64, gz bool
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "none", "text/plain":
	case "b64", "base64":
		b64 = true
	case "gz", "gzip":
		gz = true
	case "gz+b64", "gzip+base64", "gz+base64", "gzip+b64":
		b64, gz = true, true
	default:
		return nil, fmt.Errorf("encoding: unknown encoding %q (want none, b64, base64, gz, gzip, gz+b64, gzip+base64, gz+base64 or gzip+b64)", encoding)
	}
	data := []byte(content)
	if b64 {
		// Line breaks and spaces are common in YAML block scalars.
		compact := strings.Join(strings.Fields(content), "")
		dec, err := base64.StdEncoding.DecodeString(compact)
		if err != nil {
			return nil, fmt.Errorf("content: invalid base64: %w", err)
		}
		data = dec
	}
	if gz {
		r, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("content: invalid gzip: %w", err)
		}
		dec, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
		if err != nil {
			return nil, fmt.Errorf("content: invalid gzip: %w", err)
		}
		if len(dec) > MaxSize {
			return nil, fmt.Errorf("content: decompresses to more than %d MiB (a gzip bomb, or a file too large for write_files)", MaxSize>>20)
		}
		data = dec
	}
	return data, nil
}

// ParseMode parses an octal permission string ("0644", "644", "0o644",
// "04755"); empty means DefaultPermissions.
func ParseMode(s string) (os.FileMode, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultPermissions, nil
	}
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an octal mode", s)
	}
	if v > 0o7777 {
		return 0, fmt.Errorf("%q is out of range (max 07777)", s)
	}
	return atomicfile.UnixMode(uint32(v)), nil
}
