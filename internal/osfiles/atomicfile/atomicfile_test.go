package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		path     string
		data     string
		perm     os.FileMode
		uid, gid int
	}{
		{"new file in new dirs", "a/b/c.txt", "hello", 0o644, NoChown, NoChown},
		{"replace", "a/b/c.txt", "bye", 0o600, NoChown, NoChown},
		{"setuid kept after chown", "bin/tool", "x", UnixMode(0o4755), 0, 0},
		{"chown", "owned", "y", 0o640, 1234, 5678},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.path)
			if err := Write(p, []byte(tt.data), tt.perm, tt.uid, tt.gid); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != tt.data {
				t.Fatalf("content %q, %v; want %q", got, err, tt.data)
			}
			fi, _ := os.Stat(p)
			if fi.Mode() != tt.perm {
				t.Errorf("mode %v, want %v", fi.Mode(), tt.perm)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if tt.uid != NoChown && (int(st.Uid) != tt.uid || int(st.Gid) != tt.gid) {
				t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			for _, e := range entries {
				if e.Name() != filepath.Base(p) && e.Name()[0] == '.' {
					t.Errorf("temporary file left behind: %s", e.Name())
				}
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	dir := t.TempDir()
	// A regular file where a directory is needed.
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(filepath.Join(dir, "file", "x"), []byte("x"), 0o644, NoChown, NoChown)
	if err == nil {
		t.Fatal("expected an error")
	}
}

func TestUnixMode(t *testing.T) {
	for in, want := range map[uint32]os.FileMode{
		0o644:  0o644,
		0o4755: 0o755 | os.ModeSetuid,
		0o2750: 0o750 | os.ModeSetgid,
		0o1777: 0o777 | os.ModeSticky,
	} {
		if got := UnixMode(in); got != want {
			t.Errorf("UnixMode(%o) = %v, want %v", in, got, want)
		}
	}
}

// TestWriteSameContent: a file that already holds the content, mode and
// owner is left alone (same inode: no new file, no fsync); any difference,
// or a symlink in its place, gets the file replaced.
func TestWriteSameContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	ino := func() uint64 {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if err := Write(p, []byte("same"), 0o644, NoChown, NoChown); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		data     string
		perm     os.FileMode
		uid, gid int
		setup    func()
		replaced bool
	}{
		{name: "same", data: "same", perm: 0o644, uid: NoChown, gid: NoChown},
		{name: "same, owner named", data: "same", perm: 0o644, uid: os.Geteuid(), gid: os.Getegid()},
		{name: "other content, same size", data: "diff", perm: 0o644, uid: NoChown, gid: NoChown, replaced: true},
		{name: "other mode", data: "diff", perm: 0o600, uid: NoChown, gid: NoChown, replaced: true},
		{name: "other owner", data: "diff", perm: 0o600, uid: 1234, gid: 1234, replaced: true},
		{name: "back to this process's owner", data: "diff", perm: 0o600, uid: NoChown, gid: NoChown, replaced: true},
		{name: "a symlink to the same content", data: "diff", perm: 0o600, uid: NoChown, gid: NoChown, replaced: true, setup: func() {
			os.Rename(p, p+".real")
			os.Symlink(p+".real", p)
		}},
	}
	for _, s := range steps {
		if s.setup != nil {
			s.setup()
		}
		before := ino()
		if err := Write(p, []byte(s.data), s.perm, s.uid, s.gid); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		fi, _ := os.Lstat(p)
		if got := ino() != before; got != s.replaced || !fi.Mode().IsRegular() || fi.Mode().Perm() != s.perm {
			t.Errorf("%s: replaced %v, want %v; mode %v", s.name, got, s.replaced, fi.Mode())
		}
	}
}
