package writefiles

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nkestrel:x:1000:1000::/home/kestrel:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nkestrel:x:1000:\nadm:x:4:\n"), 0o644)
	return root
}

func TestWrite(t *testing.T) {
	const text = "hello\nworld\n"
	b64 := base64.StdEncoding.EncodeToString([]byte(text))
	gzb64 := base64.StdEncoding.EncodeToString(gz(t, text))
	tests := []struct {
		name     string
		file     File
		mode     os.FileMode
		uid, gid uint32
	}{
		{"plain default mode", File{Path: "/etc/plain", Content: text}, 0o644, 0, 0},
		{"none", File{Path: "/etc/none", Content: text, Encoding: "none"}, 0o644, 0, 0},
		{"b64", File{Path: "/etc/b64", Content: b64, Encoding: "b64"}, 0o644, 0, 0},
		{"base64 wrapped", File{Path: "/etc/base64", Content: b64[:8] + "\n  " + b64[8:] + "\n", Encoding: "base64"}, 0o644, 0, 0},
		{"gz", File{Path: "/etc/gz", Content: string(gz(t, text)), Encoding: "gz"}, 0o644, 0, 0},
		{"gzip", File{Path: "/etc/gzip", Content: string(gz(t, text)), Encoding: "gzip"}, 0o644, 0, 0},
		{"gz+b64", File{Path: "/etc/gzb64", Content: gzb64, Encoding: "gz+b64"}, 0o644, 0, 0},
		{"gzip+base64", File{Path: "/etc/gzipbase64", Content: gzb64, Encoding: "gzip+base64"}, 0o644, 0, 0},
		{"gz+base64", File{Path: "/etc/gzbase64", Content: gzb64, Encoding: "gz+base64"}, 0o644, 0, 0},
		{"gzip+b64 upper case", File{Path: "/etc/gzipb64", Content: gzb64, Encoding: "GZIP+B64"}, 0o644, 0, 0},
		{"owner and mode, new dirs", File{Path: "/home/kestrel/a/b/run.sh", Content: text, Owner: "kestrel:adm", Permissions: "0750"}, 0o750, 1000, 4},
		{"owner user only", File{Path: "/var/own", Content: text, Owner: "kestrel", Permissions: "600"}, 0o600, 1000, 1000},
		{"numeric owner, 0o mode", File{Path: "/var/num", Content: text, Owner: "4242:4343", Permissions: "0o640"}, 0o640, 4242, 4343},
		{"setuid", File{Path: "/usr/local/bin/x", Content: text, Permissions: "4755"}, 0o755 | os.ModeSetuid, 0, 0},
		{"unclean path", File{Path: "/etc/../../etc/unclean", Content: text}, 0o644, 0, 0},
	}
	root := testRoot(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Write(root, []File{tt.file}); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, filepath.Clean(tt.file.Path))
			got, err := os.ReadFile(p)
			if err != nil || string(got) != text {
				t.Fatalf("content %q, %v", got, err)
			}
			fi, _ := os.Stat(p)
			if fi.Mode() != tt.mode {
				t.Errorf("mode %v, want %v", fi.Mode(), tt.mode)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != tt.uid || st.Gid != tt.gid {
				t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name string
		file File
		want []string // substrings of the error
	}{
		{"bad base64", File{Path: "/etc/x", Content: "!!!not base64", Encoding: "b64"}, []string{"/etc/x", "content", "base64"}},
		{"bad gzip", File{Path: "/etc/x", Content: "plain", Encoding: "gzip"}, []string{"/etc/x", "content", "gzip"}},
		{"bad gz+b64", File{Path: "/etc/x", Content: base64.StdEncoding.EncodeToString([]byte("plain")), Encoding: "gz+b64"}, []string{"/etc/x", "content", "gzip"}},
		{"unknown encoding", File{Path: "/etc/x", Content: "x", Encoding: "rot13"}, []string{"/etc/x", "encoding", "rot13"}},
		{"unknown owner", File{Path: "/etc/x", Content: "x", Owner: "nobody42"}, []string{"/etc/x", "owner", "nobody42"}},
		{"unknown group", File{Path: "/etc/x", Content: "x", Owner: "kestrel:nogroup42"}, []string{"/etc/x", "owner", "nogroup42"}},
		{"bad mode string", File{Path: "/etc/x", Content: "x", Permissions: "rw-r--r--"}, []string{"/etc/x", "permissions", "rw-r--r--"}},
		{"non-octal mode", File{Path: "/etc/x", Content: "x", Permissions: "0888"}, []string{"/etc/x", "permissions"}},
		{"mode out of range", File{Path: "/etc/x", Content: "x", Permissions: "017777"}, []string{"/etc/x", "permissions", "range"}},
		{"relative path", File{Path: "etc/x", Content: "x"}, []string{"etc/x", "path", "absolute"}},
		{"empty path", File{Content: "x"}, []string{"path", "empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testRoot(t)
			// A good entry next to the bad one must not be written.
			err := Write(root, []File{{Path: "/etc/good", Content: "g"}, tt.file})
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "etc/good")); !os.IsNotExist(err) {
				t.Errorf("good entry was written although the batch is invalid")
			}
		})
	}
}

func TestWriteIOErrorsReportEachEntry(t *testing.T) {
	root := testRoot(t)
	os.WriteFile(filepath.Join(root, "blocker"), nil, 0o644)
	err := Write(root, []File{
		{Path: "/blocker/a", Content: "x"},
		{Path: "/ok", Content: "x"},
	})
	if err == nil || !strings.Contains(err.Error(), "/blocker/a") {
		t.Fatalf("error %v, want one naming /blocker/a", err)
	}
	if _, err := os.Stat(filepath.Join(root, "ok")); err != nil {
		t.Errorf("the good entry was not written after an I/O error on another: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, enc := range []string{"", "b64", "gz", "gz+b64"} {
		f.Add("aGVsbG8=", enc)
	}
	f.Fuzz(func(t *testing.T, content, enc string) {
		Decode(content, enc) // must not panic
	})
}

// TestUserSymlinks: write_files into a tree a user owns does not follow the
// user's symlinks out of it (issue 10 item 1): neither a linked directory
// nor a linked file redirects the write, the owner or the mode.
func TestUserSymlinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root string)
		path  string
	}{
		{"directory link to /root", func(t *testing.T, root string) {
			os.Symlink(filepath.Join(root, "root"), filepath.Join(root, "home/kestrel/conf"))
		}, "/home/kestrel/conf/authorized_keys"},
		{"relative directory link out of the home", func(t *testing.T, root string) {
			os.Symlink("../../root", filepath.Join(root, "home/kestrel/conf"))
		}, "/home/kestrel/conf/authorized_keys"},
		{"file link to root's file", func(t *testing.T, root string) {
			os.MkdirAll(filepath.Join(root, "home/kestrel/conf"), 0o755)
			os.Chown(filepath.Join(root, "home/kestrel/conf"), 1000, 1000)
			os.Symlink(filepath.Join(root, "root/authorized_keys"), filepath.Join(root, "home/kestrel/conf/authorized_keys"))
		}, "/home/kestrel/conf/authorized_keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := testRoot(t)
			os.MkdirAll(filepath.Join(root, "root"), 0o700)
			os.WriteFile(filepath.Join(root, "root/authorized_keys"), []byte("root's\n"), 0o600)
			os.MkdirAll(filepath.Join(root, "home/kestrel"), 0o755)
			os.Chown(filepath.Join(root, "home/kestrel"), 1000, 1000)
			tc.plant(t, root)
			Write(root, []File{{Path: tc.path, Content: "user's\n", Owner: "kestrel", Permissions: "0644"}})
			if b, _ := os.ReadFile(filepath.Join(root, "root/authorized_keys")); string(b) != "root's\n" {
				t.Errorf("root's file rewritten through the link: %q", b)
			}
			for _, p := range []string{"root", "root/authorized_keys"} {
				fi, err := os.Stat(filepath.Join(root, p))
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s now uid %d mode %v", p, st.Uid, fi.Mode())
				}
			}
		})
	}
	// Root's own links are still followed (e.g. /var/run -> /run).
	root := testRoot(t)
	os.MkdirAll(filepath.Join(root, "run"), 0o755)
	os.MkdirAll(filepath.Join(root, "var"), 0o755)
	os.Symlink("../run", filepath.Join(root, "var/run"))
	if err := Write(root, []File{{Path: "/var/run/x.conf", Content: "x\n"}}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "run/x.conf")); err != nil || string(b) != "x\n" {
		t.Errorf("through root's link: %q %v", b, err)
	}
}

// TestGzipBomb: gzip content is inflated at most MaxSize bytes, so a few
// KB of config cannot expand into gigabytes at validation.
func TestGzipBomb(t *testing.T) {
	for _, tc := range []struct {
		size    int
		wantErr bool
	}{{MaxSize, false}, {MaxSize + 1, true}, {64 << 20, true}} {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zero := make([]byte, 1<<20)
		for left := tc.size; left > 0; left -= len(zero) {
			zw.Write(zero[:min(left, len(zero))])
		}
		zw.Close()
		data, err := Decode(base64.StdEncoding.EncodeToString(buf.Bytes()), "gz+b64")
		if tc.wantErr != (err != nil) || (err == nil && len(data) != tc.size) {
			t.Errorf("%d bytes (%d compressed): %d bytes, %v", tc.size, buf.Len(), len(data), err)
		}
		if err != nil && !strings.Contains(err.Error(), "decompresses to more than 16 MiB") {
			t.Errorf("error %v", err)
		}
	}
}
