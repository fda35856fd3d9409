package deb

import (
	"os/exec"

	"github.com/kestrel-os/kestrel/internal/build/imagedef"

	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// realDeb fetches the pinned package (versions.yaml) into the builder's
// cache with Fetch itself, or skips where apt-get is missing.
func realDeb(t *testing.T, name string) string {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not available")
	}
	v, err := imagedef.LoadVersions("../../../versions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	version := map[string]string{"busybox-static": v.Debian.BusyboxStatic, "systemd-boot-efi": v.Debian.SystemdBootEFI}[name]
	path, err := Fetch(Package{Name: name, Version: version, Arch: "amd64"}, filepath.Join("..", "..", ".cache", "debs"))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnpackReal(t *testing.T) {
	tests := []struct {
		glob string
		want []string
	}{
		{"busybox-static", []string{"bin/busybox"}},
		{"systemd-boot-efi", []string{"usr/lib/systemd/boot/efi/systemd-bootx64.efi"}},
	}
	for _, tt := range tests {
		t.Run(tt.glob, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "root")
			if _, err := Unpack(realDeb(t, tt.glob), dest); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if _, err := os.Stat(filepath.Join(dest, w)); err != nil {
					t.Errorf("after unpack: %v", err)
				}
			}
			// A second unpack of the same .deb is a no-op: the stamp matches.
			marker := filepath.Join(dest, "marker")
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Unpack(realDeb(t, tt.glob), dest); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("second unpack replaced the tree: %v", err)
			}
		})
	}
}

// makeDeb writes an ar archive with the given members.
func makeDeb(t *testing.T, members map[string][]byte, order []string) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, name := range order {
		data := members[name]
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(data))
		b.Write(data)
		if len(data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	p := filepath.Join(t.TempDir(), "x.deb")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type tarEntry struct {
	name, link string
	typ        byte
	body       string
}

func tarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o755, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}

func TestUnpackSynthetic(t *testing.T) {
	good := tarGz(t, []tarEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "./bin/", typ: tar.TypeDir},
		{name: "./bin/tool", typ: tar.TypeReg, body: "odd-length"},
		{name: "./bin/alias", typ: tar.TypeSymlink, link: "tool"},
		{name: "./bin/hard", typ: tar.TypeLink, link: "./bin/tool"},
	})
	tests := []struct {
		name    string
		members map[string][]byte
		order   []string
		wantErr string
	}{
		{
			name:    "control before data, odd sizes padded",
			members: map[string][]byte{"debian-binary": []byte("2.0\n"), "control.tar.gz": []byte("x"), "data.tar.gz": good},
			order:   []string{"debian-binary", "control.tar.gz", "data.tar.gz"},
		},
		{
			name:    "no data member",
			members: map[string][]byte{"debian-binary": []byte("2.0\n")},
			order:   []string{"debian-binary"},
			wantErr: "no data.tar",
		},
		{
			name: "dot-dot names stay inside the destination",
			members: map[string][]byte{"data.tar.gz": tarGz(t, []tarEntry{
				{name: "../../bin/tool", typ: tar.TypeReg, body: "odd-length"},
				{name: "./bin/alias", typ: tar.TypeSymlink, link: "tool"},
				{name: "./bin/hard", typ: tar.TypeLink, link: "../bin/tool"},
			})},
			order: []string{"data.tar.gz"},
		},
		{
			name:    "unknown compression",
			members: map[string][]byte{"data.tar.lz": []byte("x")},
			order:   []string{"data.tar.lz"},
			wantErr: "unknown compression",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "root")
			_, err := Unpack(makeDeb(t, tt.members, tt.order), dest)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if left, _ := filepath.Glob(dest + "*"); len(left) > 0 {
					t.Errorf("a failed unpack left %v behind", left)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(filepath.Join(dest, "bin/hard")); string(got) != "odd-length" {
				t.Errorf("hard link contents %q", got)
			}
			if got, _ := os.Readlink(filepath.Join(dest, "bin/alias")); got != "tool" {
				t.Errorf("symlink -> %q", got)
			}
			if st, _ := os.Stat(filepath.Join(dest, "bin/tool")); st == nil || st.Mode().Perm() != 0o755 {
				t.Errorf("mode of bin/tool: %v", st)
			}
		})
	}
}

func TestNotAnArchive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.deb")
	os.WriteFile(p, []byte("hello, not ar"), 0o644)
	if _, err := Unpack(p, filepath.Join(t.TempDir(), "r")); err == nil || !strings.Contains(err.Error(), "not an ar archive") {
		t.Errorf("err = %v", err)
	}
}

func TestFileName(t *testing.T) {
	p := Package{Name: "busybox-static", Version: "1:1.35.0-4+deb12u1+b1", Arch: "amd64"}
	if got, want := p.FileName(), "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"; got != want {
		t.Errorf("FileName = %q, want %q", got, want)
	}
	if got, want := p.String(), "busybox-static:amd64=1:1.35.0-4+deb12u1+b1"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

// TestFetchCached: a .deb already in the directory is used as it is; apt
// is not run (a missing apt-get would fail otherwise).
func TestFetchCached(t *testing.T) {
	dir := t.TempDir()
	p := Package{Name: "example", Version: "1:2.0-1", Arch: "arm64"}
	want := filepath.Join(dir, p.FileName())
	if err := os.WriteFile(want, []byte("!<arch>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir()) // no apt-get
	got, err := Fetch(p, dir)
	if err != nil || got != want {
		t.Errorf("Fetch = %q, %v; want %q", got, err, want)
	}
	if _, err := Fetch(Package{Name: "absent", Version: "1", Arch: "amd64"}, dir); err == nil || !strings.Contains(err.Error(), "absent:amd64=1") {
		t.Errorf("Fetch of an absent package without apt-get: %v", err)
	}
}
