package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/cpio"
)

// sample builds the kind of archive the image builder writes.
func sample(t *testing.T) *Archive {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "init"), []byte("\x7fELF fake init"), 0o755); err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(src, "modules", "kernel", "fs")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mods, "ext4.ko"), []byte("module"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "modules", "modules.dep"), []byte("kernel/fs/ext4.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := New(1700000000)
	steps := []error{
		a.AddHostFile("/init", filepath.Join(src, "init")),
		a.AddCharDev("/dev/console", 0o600, 5, 1),
		a.AddDir("/proc", 0o555),
		a.AddSymlink("/bin/sh", "busybox"),
		a.AddFile("/usr/lib/kestrel/modules", []byte("ext4\n"), 0o644),
		a.AddTree("/lib/modules/6.1.0-test", filepath.Join(src, "modules")),
	}
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
	return a
}

// readBack decompresses and parses an archive with u-root's reader.
func readBack(t *testing.T, data []byte, compression string) map[string]cpio.Record {
	t.Helper()
	var r io.Reader
	switch compression {
	case Zstd:
		d, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	case LZ4:
		// The kernel reads the legacy frame only (lib/decompress_unlz4.c
		// checks this magic); the boot tests show it unpacking one.
		if !bytes.HasPrefix(data, []byte{0x02, 0x21, 0x4c, 0x18}) {
			t.Fatalf("lz4 archive starts % x, want the legacy frame's magic 02 21 4c 18", data[:4])
		}
		r = lz4.NewReader(bytes.NewReader(data))
	case None:
		r = bytes.NewReader(data)
	case Gzip:
		g, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		r = g
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(raw))})
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	out := map[string]cpio.Record{}
	var order []string
	for _, rec := range recs {
		out[rec.Name] = rec
		order = append(order, rec.Name)
	}
	// Every directory comes before what it holds.
	seen := map[string]bool{}
	for _, n := range order {
		if d := filepath.Dir(n); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", n, d)
		}
		seen[n] = true
	}
	return out
}

func TestWriteReadBack(t *testing.T) {
	for _, c := range []string{LZ4, Zstd, Gzip, None} {
		t.Run(c, func(t *testing.T) {
			var buf bytes.Buffer
			if err := sample(t).Write(&buf, c); err != nil {
				t.Fatal(err)
			}
			recs := readBack(t, buf.Bytes(), c)
			tests := []struct {
				name  string
				check func(cpio.Record) bool
				what  string
			}{
				{"dev/console", func(r cpio.Record) bool {
					return r.Mode&cpio.S_IFMT == cpio.S_IFCHR && r.Rmajor == 5 && r.Rminor == 1
				}, "char device 5,1"},
				{"init", func(r cpio.Record) bool {
					return r.Mode&cpio.S_IFMT == cpio.S_IFREG && r.Mode&0o111 == 0o111
				}, "executable file"},
				{"bin/sh", func(r cpio.Record) bool { return r.Mode&cpio.S_IFMT == cpio.S_IFLNK }, "symlink"},
				{"bin", func(r cpio.Record) bool { return r.Mode&cpio.S_IFMT == cpio.S_IFDIR }, "implicit directory"},
				{"lib/modules/6.1.0-test/kernel/fs/ext4.ko", func(r cpio.Record) bool { return r.FileSize == 6 }, "module file"},
				{"lib/modules/6.1.0-test/modules.dep", func(r cpio.Record) bool { return r.FileSize > 0 }, "modules.dep"},
				{"usr/lib/kestrel/modules", func(r cpio.Record) bool { return r.FileSize == 5 }, "module list"},
				{"proc", func(r cpio.Record) bool { return r.Mode&0o777 == 0o555 }, "mode 0555 dir"},
			}
			for _, tt := range tests {
				r, ok := recs[tt.name]
				if !ok {
					t.Errorf("%s: missing", tt.name)
					continue
				}
				if !tt.check(r) {
					t.Errorf("%s: want %s, got %v", tt.name, tt.what, r.Info)
				}
				if r.MTime != 1700000000 || r.UID != 0 || r.GID != 0 {
					t.Errorf("%s: mtime %d uid %d gid %d, want fixed mtime and root", tt.name, r.MTime, r.UID, r.GID)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	for _, c := range []string{LZ4, Zstd} {
		var a, b bytes.Buffer
		if err := sample(t).Write(&a, c); err != nil {
			t.Fatal(err)
		}
		if err := sample(t).Write(&b, c); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: two archives of the same inputs differ", c)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		run  func(*Archive) error
	}{
		{"duplicate file", func(a *Archive) error {
			a.AddFile("/x", nil, 0o644)
			return a.AddFile("/x", nil, 0o644)
		}},
		{"missing host file", func(a *Archive) error { return a.AddHostFile("/init", "/nonexistent/init") }},
		{"unknown compression", func(a *Archive) error { return a.Write(io.Discard, "xz") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(New(0)); err == nil {
				t.Error("no error")
			}
		})
	}
	// A directory added twice (explicitly and as a parent) is fine.
	a := New(0)
	if err := errors.Join(a.AddFile("/dev/x", nil, 0o644), a.AddDir("/dev", 0o755)); err != nil {
		t.Errorf("directory added twice: %v", err)
	}
}
