package pipeline

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInstallZoneinfo(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	zi := filepath.Join(src, "usr/share/zoneinfo")
	for _, f := range []string{"UTC", "Europe/Paris", "right/Europe/Paris", "posix/UTC"} {
		os.MkdirAll(filepath.Join(zi, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(zi, f), []byte("TZif "+f), 0o600)
	}
	os.Symlink("Paris", filepath.Join(zi, "Europe/Lutetia"))
	os.Symlink("/etc/localtime", filepath.Join(zi, "localtime"))
	if err := installZoneinfo(src, dst); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dst, "usr/share/zoneinfo")
	for _, tc := range []struct {
		path, want string // want "" means absent
		link       bool
	}{
		{"UTC", "TZif UTC", false},
		{"Europe/Paris", "TZif Europe/Paris", false},
		{"Europe/Lutetia", "Paris", true},
		{"right", "", false},
		{"posix", "", false},
		{"localtime", "", false}, // absolute link out of the tree
	} {
		p := filepath.Join(out, tc.path)
		var got string
		if tc.link {
			got, _ = os.Readlink(p)
		} else if b, err := os.ReadFile(p); err == nil {
			got = string(b)
		}
		if _, err := os.Lstat(p); tc.want == "" && err == nil {
			t.Errorf("%s: exists, want it left out", tc.path)
		} else if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.path, got, tc.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "UTC")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("UTC mode: %v, %v", fi, err)
	}
}
