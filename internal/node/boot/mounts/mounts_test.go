package mounts

import (
	"errors"
	"path/filepath"
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

func TestUnescape(t *testing.T) {
	if got := unescape(`/mnt/a\040b`); got != "/mnt/a b" {
		t.Errorf("got %q", got)
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
