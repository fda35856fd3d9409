package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

// testSpec returns a Spec over fake binaries and a small overlay.
func testSpec(t *testing.T) Spec {
	t.Helper()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "kestrel"), "kestrel binary", 0o755)
	writeFile(t, filepath.Join(src, "busybox"), "busybox binary", 0o755)
	writeFile(t, filepath.Join(src, "ca.crt"), "-----BEGIN CERTIFICATE-----\n", 0o644)
	ov := filepath.Join(src, "overlay")
	writeFile(t, filepath.Join(ov, "etc/os-release"), "NAME=Kestrel\nVERSION_ID={{.Version}}\nVARIANT_ID={{.Arch}}\nKERNEL={{.Kernel}}\n", 0o644)
	writeFile(t, filepath.Join(ov, "etc/shadow"), "root:*:1::::::\n", 0o644)
	writeFile(t, filepath.Join(ov, "etc/hosts"), "127.0.0.1 localhost\n", 0o644)
	writeFile(t, filepath.Join(ov, "README.md"), "not shipped\n", 0o644)
	return Spec{
		Kestrel:   filepath.Join(src, "kestrel"),
		Busybox:   filepath.Join(src, "busybox"),
		Applets:   []string{"/bin/sh", "/bin/ls", "/sbin/init", "/usr/bin/tail", "/linuxrc", "/sbin/ip"},
		Overlay:   ov,
		CABundle:  filepath.Join(src, "ca.crt"),
		OSRelease: OSRelease{Version: "1.2.3", Arch: "amd64", Kernel: "6.1.0-50-amd64"},
	}
}

func TestAssemble(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	if err := Assemble(testSpec(t), dir); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path     string
		mode     os.FileMode // type and permission bits wanted; 0 = only exists
		link     string      // symlink target wanted
		contains string      // contents wanted
	}{
		{path: "/usr/bin/kestrel", mode: 0o755},
		{path: "/sbin/init", link: "/usr/bin/kestrel"},
		{path: "/bin/busybox", mode: 0o755},
		{path: "/bin/sh", link: "/bin/busybox"},
		{path: "/bin/ls", link: "/bin/busybox"},
		{path: "/usr/bin/tail", link: "/bin/busybox"},
		{path: "/sbin/ip", link: "/bin/busybox"},
		{path: "/etc/os-release", contains: "VERSION_ID=1.2.3\nVARIANT_ID=amd64\nKERNEL=6.1.0-50-amd64\n"},
		{path: "/etc/shadow", mode: 0o600},
		{path: "/etc/hosts", contains: "localhost"},
		{path: CABundlePath, contains: "BEGIN CERTIFICATE"},
		{path: "/tmp", mode: os.ModeDir | os.ModeSticky | 0o777},
		{path: "/root", mode: os.ModeDir | 0o700},
		{path: "/state", mode: os.ModeDir | 0o755},
		{path: "/boot/efi", mode: os.ModeDir | 0o755},
		{path: "/proc", mode: os.ModeDir | 0o755},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.path)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", tt.path, err)
			continue
		}
		if tt.mode != 0 && st.Mode()&(os.ModeType|os.ModePerm|os.ModeSticky) != tt.mode {
			t.Errorf("%s: mode %v, want %v", tt.path, st.Mode(), tt.mode)
		}
		if tt.link != "" {
			if got, _ := os.Readlink(p); got != tt.link {
				t.Errorf("%s: links to %q, want %q", tt.path, got, tt.link)
			}
		}
		if tt.contains != "" {
			if got, _ := os.ReadFile(p); !strings.Contains(string(got), tt.contains) {
				t.Errorf("%s: %q lacks %q", tt.path, got, tt.contains)
			}
		}
	}
	for _, absent := range []string{"/linuxrc", "/README.md"} {
		if _, err := os.Lstat(filepath.Join(dir, absent)); err == nil {
			t.Errorf("%s should not be in the rootfs", absent)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string
	}{
		{"missing kestrel", func(s *Spec) { s.Kestrel = "/nonexistent" }, "kestrel"},
		{"bad template", func(s *Spec) {
			os.WriteFile(filepath.Join(s.Overlay, "etc/os-release"), []byte("V={{.Nope}}\n"), 0o644)
		}, "os-release"},
		{"no template", func(s *Spec) { os.Remove(filepath.Join(s.Overlay, "etc/os-release")) }, "os-release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(t)
			tt.modify(&spec)
			err := Assemble(spec, filepath.Join(t.TempDir(), "root"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSquash(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (squashfs-tools; scripts/deps.sh installs it)", tool)
		}
	}
	dir := filepath.Join(t.TempDir(), "root")
	if err := Assemble(testSpec(t), dir); err != nil {
		t.Fatal(err)
	}
	// Enough entries to catch writers that break past a few hundred.
	for i := 0; i < 600; i++ {
		writeFile(t, filepath.Join(dir, "usr/share/many", fmt.Sprintf("file-%03d-%s", i, strings.Repeat("x", i%50))), "x", 0o644)
	}
	cache := t.TempDir()
	for _, opts := range []SquashOptions{{Compression: "xz", BCJ: "x86", Time: 1700000000}, {Compression: "zstd"}} {
		t.Run(opts.Compression, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "root.squashfs")
			if err := Squash(dir, out, opts, cache); err != nil {
				t.Fatal(err)
			}
			list, err := exec.Command("unsquashfs", "-lln", out).CombinedOutput()
			if err != nil {
				t.Fatalf("unsquashfs -l: %v\n%s", err, list)
			}
			for _, want := range []string{
				"-rwxr-xr-x 0/0", // -all-root
				"squashfs-root/usr/bin/kestrel",
				"squashfs-root/sbin/init -> /usr/bin/kestrel",
				"drwxrwxrwt 0/0",
				"squashfs-root/usr/share/many/",
			} {
				if !strings.Contains(string(list), want) {
					t.Errorf("unsquashfs -lln lacks %q", want)
				}
			}
			if n := strings.Count(string(list), "squashfs-root/usr/share/many/"); n != 600 {
				t.Errorf("%d files under usr/share/many, want 600", n)
			}
			// Same tree, same options: the cached image is reused byte for byte.
			again := filepath.Join(t.TempDir(), "again.squashfs")
			if err := Squash(dir, again, opts, cache); err != nil {
				t.Fatal(err)
			}
			a, _ := os.ReadFile(out)
			b, _ := os.ReadFile(again)
			if string(a) != string(b) {
				t.Error("second squash of the same tree differs")
			}
		})
	}
}

func TestTreeDigestChanges(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), "one", 0o644)
	d1, err := TreeDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	changes := []struct {
		name string
		do   func()
	}{
		{"content", func() { writeFile(t, filepath.Join(dir, "a"), "two", 0o644) }},
		{"mode", func() { os.Chmod(filepath.Join(dir, "a"), 0o755) }},
		{"new symlink", func() { os.Symlink("a", filepath.Join(dir, "b")) }},
	}
	prev := d1
	for _, c := range changes {
		c.do()
		d, err := TreeDigest(dir)
		if err != nil {
			t.Fatal(err)
		}
		if d == prev {
			t.Errorf("%s: digest did not change", c.name)
		}
		prev = d
	}
}

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i := 0; i < 9; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%d.squashfs", i))
		writeFile(t, p, "x", 0o644)
		os.Chtimes(p, base, base.Add(time.Duration(i)*time.Minute))
	}
	pruneCache(dir, 6)
	left, _ := filepath.Glob(filepath.Join(dir, "*.squashfs"))
	if len(left) != 6 {
		t.Fatalf("%d images left, want 6", len(left))
	}
	for _, gone := range []string{"0", "1", "2"} {
		if _, err := os.Stat(filepath.Join(dir, gone+".squashfs")); err == nil {
			t.Errorf("oldest image %s kept", gone)
		}
	}
}
