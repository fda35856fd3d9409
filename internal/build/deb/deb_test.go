package deb

import (
	"os/exec"

	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/progress"

	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
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
	path, err := Fetch(Package{Name: name, Version: version, Arch: "amd64"}, filepath.Join("..", "..", "..", ".cache", "debs"), nil)
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

// TestUnpackSymlinkEscape: an archive that plants a symlink pointing out
// of the destination and then writes through it is refused, or the entry
// stays inside; nothing outside the destination is written or linked in.
//
// Link targets name $OUT, a directory outside the destination made afresh
// for each case and holding one file, secret.
func TestUnpackSymlinkEscape(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr string                                  // refused: the error names the entry
		check   func(t *testing.T, dest, secret string) // contained: what the tree holds
	}{
		{
			name: "file through an absolute symlink",
			entries: []tarEntry{
				{name: "./evil", typ: tar.TypeSymlink, link: "$OUT"},
				{name: "./evil/file", typ: tar.TypeReg, body: "planted"},
			},
			wantErr: "extract ./evil/file",
		},
		{
			name: "file through a relative symlink climbing out",
			entries: []tarEntry{
				{name: "./usr/", typ: tar.TypeDir},
				{name: "./usr/up", typ: tar.TypeSymlink, link: "../../../../../../../../../../..$OUT"},
				{name: "./usr/up/file", typ: tar.TypeReg, body: "planted"},
			},
			wantErr: "extract ./usr/up/file",
		},
		{
			name: "directory through a symlink",
			entries: []tarEntry{
				{name: "./evil", typ: tar.TypeSymlink, link: "$OUT"},
				{name: "./evil/sub/", typ: tar.TypeDir},
			},
			wantErr: "extract ./evil/sub/",
		},
		{
			name: "hard link to a host file through a symlink",
			entries: []tarEntry{
				{name: "./evil", typ: tar.TypeSymlink, link: "$OUT"},
				{name: "./stolen", typ: tar.TypeLink, link: "./evil/secret"},
			},
			wantErr: "extract ./stolen",
		},
		{
			name: "file replacing a symlink to a host file",
			entries: []tarEntry{
				{name: "./evil", typ: tar.TypeSymlink, link: "$OUT/secret"},
				{name: "./evil", typ: tar.TypeReg, body: "planted"},
			},
			check: func(t *testing.T, dest, secret string) {
				if st, err := os.Lstat(filepath.Join(dest, "evil")); err != nil || !st.Mode().IsRegular() {
					t.Errorf("evil: %v; want a regular file in the tree", err)
					if err == nil {
						t.Errorf("evil has mode %v", st.Mode())
					}
				}
			},
		},
		{
			name: "symlink pointing outside is kept as a link",
			entries: []tarEntry{
				{name: "./etc/", typ: tar.TypeDir},
				{name: "./etc/localtime", typ: tar.TypeSymlink, link: "$OUT/secret"},
			},
			check: func(t *testing.T, dest, secret string) {
				if got, err := os.Readlink(filepath.Join(dest, "etc/localtime")); err != nil || got != secret {
					t.Errorf("etc/localtime -> %q, %v; want %q", got, err, secret)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			secret := filepath.Join(outside, "secret")
			if err := os.WriteFile(secret, []byte("host file"), 0o644); err != nil {
				t.Fatal(err)
			}
			var entries []tarEntry
			for _, e := range tt.entries {
				e.link = strings.ReplaceAll(e.link, "$OUT", outside)
				entries = append(entries, e)
			}
			dest := filepath.Join(t.TempDir(), "root")
			deb := makeDeb(t, map[string][]byte{"data.tar.gz": tarGz(t, entries)}, []string{"data.tar.gz"})
			_, err := Unpack(deb, dest)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				tt.check(t, dest, secret)
			}
			left, err := os.ReadDir(outside)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != 1 || left[0].Name() != "secret" {
				t.Errorf("outside the destination now holds %v", left)
			}
			if got, _ := os.ReadFile(secret); string(got) != "host file" {
				t.Errorf("host file outside the destination now holds %q", got)
			}
			if st, _ := os.Stat(secret); st != nil {
				if n := st.Sys().(*syscall.Stat_t).Nlink; n != 1 {
					t.Errorf("host file outside the destination has %d links: linked into the tree", n)
				}
			}
		})
	}
}

// TestFetchTamperedCache: a cached .deb whose sha256 is not the one apt's
// metadata gives for the pinned version is never returned: it is fetched
// again, or, when apt-get cannot fetch it, refused with an error. The
// download is reported: why, its size, then bytes and rate.
func TestFetchTamperedCache(t *testing.T) {
	aptCache, err := exec.LookPath("apt-cache")
	if err != nil {
		t.Skip("apt-cache not available")
	}
	good := realDeb(t, "busybox-static")
	v, err := imagedef.LoadVersions("../../../versions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := Package{Name: "busybox-static", Version: v.Debian.BusyboxStatic, Arch: "amd64"}
	wantSum, err := fileSHA256(good)
	if err != nil {
		t.Fatal(err)
	}
	// A PATH holding the real apt-cache and no apt-get: the hash can be
	// looked up, but nothing can be downloaded.
	onlyAptCache := t.TempDir()
	if err := os.Symlink(aptCache, filepath.Join(onlyAptCache, "apt-cache")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string // $PATH while fetching
		wantErr string
		wantLog []string // progress lines, in order, as regular expressions
	}{
		{name: "fetched again", path: os.Getenv("PATH"), wantLog: []string{
			`^deb busybox-static:amd64=\S+: cached file refused, fetching it again: .* has sha256 [0-9a-f]+, apt's metadata says ` + wantSum + `$`,
			`^deb busybox-static:amd64=\S+: apt-get download: \d+(\.\d+)? [KM]iB$`,
			`^deb busybox-static:amd64=\S+: apt-get download: \d+(\.\d+)? [KM]iB in \S+ \(\d+(\.\d+)? [KMG]?i?B/s\)$`,
		}},
		{name: "refused when it cannot be fetched again", path: onlyAptCache, wantErr: "apt-get download"},
		{name: "refused when apt cannot vouch for it", path: t.TempDir(), wantErr: "apt-cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data, err := os.ReadFile(good)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(filepath.Join(dir, p.FileName()), data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", tt.path)
			var lines strings.Builder
			got, err := Fetch(p, dir, progress.New(&lines))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Fetch = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sum, err := fileSHA256(got); err != nil || sum != wantSum {
				t.Errorf("Fetch returned %s with sha256 %s (%v), want %s", got, sum, err, wantSum)
			}
			logged := strings.Split(strings.TrimSuffix(lines.String(), "\n"), "\n")
			if len(logged) != len(tt.wantLog) {
				t.Fatalf("progress lines:\n%s\nwant %d lines", lines.String(), len(tt.wantLog))
			}
			for i, re := range tt.wantLog {
				if !regexp.MustCompile(re).MatchString(logged[i]) {
					t.Errorf("progress line %d = %q, want it to match %s", i+1, logged[i], re)
				}
			}
		})
	}
}
