package mounts

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

const sample = `22 1 0:21 / / ro,relatime shared:1 - squashfs /dev/vda2 ro,errors=continue
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=238616k,nr_inodes=59654,mode=755
24 22 254:4 / /state rw,relatime shared:3 - ext4 /dev/vda4 rw
25 22 254:4 /var /var rw,relatime shared:3 - ext4 /dev/vda4 rw
26 22 0:30 / /mnt/with\040space rw - tmpfs tmpfs rw
`

func TestParseMountinfo(t *testing.T) {
	in, err := ParseMountinfo(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 5 {
		t.Fatalf("%d entries", len(in))
	}
	if in[0].Target != "/" || in[0].FSType != "squashfs" || in[0].Source != "/dev/vda2" || !in[0].ReadOnly() {
		t.Errorf("root = %+v", in[0])
	}
	if in[3].Root != "/var" || in[3].ReadOnly() || in[3].Parent != 22 {
		t.Errorf("var = %+v", in[3])
	}
	if in[4].Target != "/mnt/with space" {
		t.Errorf("escaped target = %q", in[4].Target)
	}
	if strings.Join(in[2].Optional, " ") != "shared:3" || len(in[4].Optional) != 0 {
		t.Errorf("optional fields = %q, %q; want [shared:3], none", in[2].Optional, in[4].Optional)
	}
	if m, ok := Find(in, "/state"); !ok || m.Source != "/dev/vda4" {
		t.Errorf("Find /state = %+v %v", m, ok)
	}
	if _, err := ParseMountinfo(strings.NewReader("garbage line\n")); err == nil {
		t.Error("garbage accepted")
	}
}

// TestParseMountinfoFields checks single lines field by field, including
// what a split on runs of spaces got wrong: an empty source.
func TestParseMountinfoFields(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Info
	}{
		{"plain", `24 22 254:4 / /state rw,relatime shared:3 - ext4 /dev/vda4 rw`,
			Info{ID: 24, Parent: 22, Root: "/", Target: "/state", Options: "rw,relatime", Optional: []string{"shared:3"}, FSType: "ext4", Source: "/dev/vda4", Super: "rw"}},
		{"empty source", `30 22 0:40 / /run rw,nosuid - tmpfs  rw,mode=755`,
			Info{ID: 30, Parent: 22, Root: "/", Target: "/run", Options: "rw,nosuid", FSType: "tmpfs", Source: "", Super: "rw,mode=755"}},
		{"empty source, no optional fields, empty super options", `31 22 0:41 / /x rw - tmpfs  `,
			Info{ID: 31, Parent: 22, Root: "/", Target: "/x", Options: "rw", FSType: "tmpfs"}},
		{"octal escapes", `26 22 0:30 /a\134b /mnt/with\040space\011tab rw - fuse.sshfs me@host:/my\040docs rw`,
			Info{ID: 26, Parent: 22, Root: `/a\b`, Target: "/mnt/with space\ttab", Options: "rw", FSType: "fuse.sshfs", Source: "me@host:/my docs", Super: "rw"}},
		{"escape at the end of a field", `27 22 0:31 / /mnt/trailing\040 rw - tmpfs tmpfs rw`,
			Info{ID: 27, Parent: 22, Root: "/", Target: "/mnt/trailing ", Options: "rw", FSType: "tmpfs", Source: "tmpfs", Super: "rw"}},
		{"several optional fields", `28 22 0:32 / /m rw shared:5 master:1 propagate_from:2 - tmpfs tmpfs rw`,
			Info{ID: 28, Parent: 22, Root: "/", Target: "/m", Options: "rw", Optional: []string{"shared:5", "master:1", "propagate_from:2"}, FSType: "tmpfs", Source: "tmpfs", Super: "rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader(tt.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseMountinfoErrors(t *testing.T) {
	for _, line := range []string{
		"garbage line",
		"22 1 0:21 / / ro,relatime shared:1 squashfs /dev/vda2 ro", // no separator
		"22 1 021 / / ro - squashfs /dev/vda2 ro",                  // no major:minor
	} {
		if _, err := ParseMountinfo(strings.NewReader(line + "\n")); err == nil || !strings.Contains(err.Error(), "mountinfo") {
			t.Errorf("%q: err %v, want a mountinfo error", line, err)
		}
	}
	path := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(path, []byte("garbage line\n"), 0o644)
	if _, err := ReadMountinfo(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ReadMountinfo of a bad file: %v, want an error naming %s", err, path)
	}
}

func TestApply(t *testing.T) {
	dir := t.TempDir()
	var calls []string
	fail := errors.New("no bpf here")
	mount := func(src, tgt, fs string, fl uintptr, data string) error {
		calls = append(calls, fs+":"+filepath.Base(tgt))
		if fs == "bpf" || fs == "broken" {
			return fail
		}
		return nil
	}
	ms := []Mount{
		{Source: "tmpfs", Target: filepath.Join(dir, "run"), FSType: "tmpfs", Flags: syscall.MS_NOSUID},
		{Source: "bpf", Target: filepath.Join(dir, "sys/fs/bpf"), FSType: "bpf", Optional: true},
		{Source: "x", Target: filepath.Join(dir, "y"), FSType: "broken"},
		{Source: "never", Target: filepath.Join(dir, "z"), FSType: "tmpfs"},
	}
	skipped, err := Apply(ms, mount)
	if len(skipped) != 1 || !errors.Is(skipped[0], fail) {
		t.Errorf("skipped = %v", skipped)
	}
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("err = %v", err)
	}
	if strings.Join(calls, " ") != "tmpfs:run bpf:bpf broken:y" {
		t.Errorf("calls = %v", calls)
	}
	if s := ms[0].String(); s != "tmpfs on "+filepath.Join(dir, "run")+" type tmpfs (nosuid)" {
		t.Errorf("String = %q", s)
	}
}
