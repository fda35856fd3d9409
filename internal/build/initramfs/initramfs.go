// Package initramfs writes Linux initramfs archives: newc cpio (u-root's
// pkg/cpio) compressed with lz4, zstd or gzip, built in memory from host
// files and synthetic entries, without needing root (device nodes are
// records, not mknod calls).
//
// Archives are deterministic: entries are written sorted by path, with one
// fixed mtime, uid/gid 0, and inode numbers assigned in that order, so the
// same inputs give the same bytes.
//
// Limits: hard links are not preserved (each is a separate copy), file
// contents are held in memory until written (fine for an initramfs, not
// for a rootfs), and only lz4, zstd and gzip are offered because those
// are what the Debian kernels decompress that Go writes well, besides
// none (the kernel copies the archive as it is: no decompression, but the
// boot loader reads three times the bytes from the ESP). lz4 is written
// in LZ4's legacy frame, the only one the kernel's unpacker reads.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/cpio"
)

// Archive collects initramfs entries. The zero value is not usable: call New.
type Archive struct {
	mtime   uint64
	entries map[string]cpio.Record
}

// New returns an empty archive whose entries all carry mtime (seconds since
// the epoch; use a fixed value for reproducible output).
func New(mtime int64) *Archive {
	return &Archive{mtime: uint64(mtime), entries: map[string]cpio.Record{}}
}

// AddFile adds a regular file with the given contents and permissions.
func (a *Archive) AddFile(name string, data []byte, perm os.FileMode) error {
	return a.add(cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | uint64(perm.Perm())}))
}

// AddHostFile adds the host file src as name, keeping its permission bits.
func (a *Archive) AddHostFile(name, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", name, err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", name, err)
	}
	return a.AddFile(name, data, st.Mode())
}

// AddDir adds a directory.
func (a *Archive) AddDir(name string, perm os.FileMode) error {
	return a.add(cpio.Directory(name, uint64(perm.Perm())))
}

// AddSymlink adds a symbolic link name -> target.
func (a *Archive) AddSymlink(name, target string) error {
	return a.add(cpio.Symlink(name, target))
}

// AddCharDev adds a character device node.
func (a *Archive) AddCharDev(name string, perm os.FileMode, major, minor uint64) error {
	return a.add(cpio.CharDev(name, uint64(perm.Perm()), major, minor))
}

// AddTree adds the host directory src (files, directories, symlinks) under
// prefix.
func (a *Archive) AddTree(prefix, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		switch t := d.Type(); {
		case t.IsDir():
			return a.AddDir(name, 0o755)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return a.AddSymlink(name, target)
		case t.IsRegular():
			return a.AddHostFile(name, p)
		}
		return fmt.Errorf("initramfs: %s: unsupported file type %v", p, d.Type())
	})
}

// add records an entry and the directories above it.
func (a *Archive) add(r cpio.Record) error {
	name := strings.Trim(path.Clean("/"+r.Name), "/")
	if name == "" || name == "." {
		return nil // the root itself is implicit
	}
	if old, dup := a.entries[name]; dup && !(isDir(old) && isDir(r)) {
		return fmt.Errorf("initramfs: %s added twice", name)
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = cpio.Directory(dir, 0o755)
		}
	}
	r.Name = name
	a.entries[name] = r
	return nil
}

func isDir(r cpio.Record) bool { return r.Mode&cpio.S_IFMT == cpio.S_IFDIR }

// Has reports whether name is in the archive.
func (a *Archive) Has(name string) bool {
	_, ok := a.entries[strings.Trim(path.Clean("/"+name), "/")]
	return ok
}

// WriteCPIO writes the uncompressed newc archive.
func (a *Archive) WriteCPIO(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	// Sorted paths put every directory before what it holds.
	sort.Strings(names)
	rw := cpio.Newc.Writer(w)
	for i, n := range names {
		r := a.entries[n]
		r.Ino = uint64(i + 1)
		r.MTime = a.mtime
		r.UID, r.GID = 0, 0
		r.NLink = 1
		if isDir(r) {
			r.NLink = 2
		}
		if err := rw.WriteRecord(r); err != nil {
			return fmt.Errorf("initramfs: write %s: %w", n, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("initramfs: write trailer: %w", err)
	}
	return nil
}

// Compression names the supported initramfs compressors.
const (
	LZ4  = "lz4"
	Zstd = "zstd"
	Gzip = "gzip"
	None = "none"
)

// Write writes the archive compressed with compression (LZ4, Zstd, Gzip
// or None).
func (a *Archive) Write(w io.Writer, compression string) error {
	var raw bytes.Buffer
	if err := a.WriteCPIO(&raw); err != nil {
		return err
	}
	switch compression {
	case None:
		if _, err := raw.WriteTo(w); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	case Zstd:
		// A bounded window keeps the kernel's decompression workspace
		// small; without it a single-segment frame asks for the whole
		// archive size.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(8<<20), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("initramfs: zstd: %w", err)
		}
		if _, err := raw.WriteTo(zw); err != nil {
			return fmt.Errorf("initramfs: zstd: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("initramfs: zstd: %w", err)
		}
	case LZ4:
		// The kernel's initramfs unpacker (lib/decompress_unlz4.c) reads
		// LZ4's legacy frame only: its magic, then chunks of at most 8 MiB
		// of output, each always compressed; pierrec/lz4 writes exactly
		// that with LegacyOption. Level9 is its best ratio (about 5 %
		// larger than the lz4 tool's -9); decompression speed does not
		// depend on the level.
		lw := lz4.NewWriter(w)
		if err := lw.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4.Level9), lz4.ConcurrencyOption(1)); err != nil {
			return fmt.Errorf("initramfs: lz4: %w", err)
		}
		if _, err := raw.WriteTo(lw); err != nil {
			return fmt.Errorf("initramfs: lz4: %w", err)
		}
		if err := lw.Close(); err != nil {
			return fmt.Errorf("initramfs: lz4: %w", err)
		}
	case Gzip:
		gw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return fmt.Errorf("initramfs: gzip: %w", err)
		}
		if _, err := raw.WriteTo(gw); err != nil {
			return fmt.Errorf("initramfs: gzip: %w", err)
		}
		if err := gw.Close(); err != nil {
			return fmt.Errorf("initramfs: gzip: %w", err)
		}
	default:
		return fmt.Errorf("initramfs: unknown compression %q (want lz4, zstd, gzip or none)", compression)
	}
	return nil
}

// WriteFile writes the compressed archive to path.
func (a *Archive) WriteFile(path, compression string) error {
	var buf bytes.Buffer
	if err := a.Write(&buf, compression); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
