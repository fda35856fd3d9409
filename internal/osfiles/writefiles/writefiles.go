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
// root-owned; symlinks inside root are followed, so root must be trusted
// (stage 2 passes "/").
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
		if err := atomicfile.Write(p.target, p.data, p.mode, p.uid, p.gid); err != nil {
			errs = append(errs, fmt.Errorf("write_files %s: %w", p.path, err))
		}
	}
	return errors.Join(errs...)
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
