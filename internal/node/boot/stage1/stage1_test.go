package stage1

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

func TestPlan(t *testing.T) {
	steps := Plan(PlanInput{
		NewRoot: "/newroot", RootDev: "/dev/vda2", StateDev: "/dev/vda4", StateMount: "/state",
		PersistentDirs: []string{"var", "home", "root"}, EtcStage: "/.etc",
		Proc: "/proc", Sys: "/sys", Dev: "/dev", GrowState: true, RandomSeed: "/var/lib/kestrel/random-seed",
	})
	want := []string{
		"mount /dev/vda2 on /newroot type squashfs (ro)",
		"check ext4 on /dev/vda4",
		"mount /dev/vda4 on /newroot/state type ext4 (nosuid,nodev,noatime,errors=remount-ro)",
		"grow ext4 on /dev/vda4 at /newroot/state",
		"mkdir /newroot/state/var (0755)",
		"mount /newroot/state/var on /newroot/var (bind)",
		"mount /newroot/state/var on /newroot/var (nosuid,nodev,noatime,remount,bind)",
		"mkdir /newroot/state/home (0755)",
		"mount /newroot/state/home on /newroot/home (bind)",
		"mount /newroot/state/home on /newroot/home (nosuid,nodev,noatime,remount,bind)",
		"mkdir /newroot/state/root (0700)",
		"mount /newroot/state/root on /newroot/root (bind)",
		"mount /newroot/state/root on /newroot/root (nosuid,nodev,noatime,remount,bind)",
		"load random seed /newroot/var/lib/kestrel/random-seed",
		"mount tmpfs on /newroot/run type tmpfs (nosuid,nodev,mode=0755)",
		"mount tmpfs on /newroot/tmp type tmpfs (nosuid,nodev,mode=1777)",
		"mount tmpfs on /.etc type tmpfs (nosuid,nodev,mode=0755)",
		"copy /newroot/etc -> /.etc",
		"mount /.etc on /newroot/etc (move)",
		"mount /dev on /newroot/dev (move)",
		"mount /proc on /newroot/proc (move)",
		"mount /sys on /newroot/sys (move)",
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	noGrow := Plan(PlanInput{NewRoot: "/n", RootDev: "r", StateDev: "s", StateMount: "/state", EtcStage: "/e"})
	for _, s := range noGrow {
		if s.Op == OpResize {
			t.Error("plan grows state although GrowState is false")
		}
	}
}

func TestExecuteStopsAndTolerates(t *testing.T) {
	var log []string
	ops := Ops{
		Mount: func(src, tgt, fs string, fl uintptr, d string) error {
			log = append(log, "mount "+tgt)
			if fs == "bad" {
				return syscall.EINVAL
			}
			return nil
		},
		Mkdir:  func(p string, m uint32) error { log = append(log, "mkdir "+p); return nil },
		Copy:   func(a, b string) error { log = append(log, "copy"); return nil },
		Resize: func(d, p string) (uint64, uint64, error) { return 0, 0, errors.New("no resize_inode") },
		Logf:   func(f string, a ...any) { log = append(log, "log "+fmt.Sprintf(f, a...)) },
	}
	dir := t.TempDir()
	err := Execute([]Step{
		{Op: OpResize, Device: "/dev/x", Path: dir},
		{Op: OpMount, Mount: mountOf(dir+"/a", "bad")},
		{Op: OpCopy},
	}, ops)
	if err == nil || !errors.Is(err, syscall.EINVAL) {
		t.Errorf("err = %v", err)
	}
	if len(log) != 2 || !strings.Contains(log[0], "no resize_inode") {
		t.Errorf("log = %q", log)
	}
}

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(src, "ssl", "certs"), 0o755)
	os.WriteFile(filepath.Join(src, "os-release"), []byte("VERSION_ID=1\n"), 0o644)
	os.WriteFile(filepath.Join(src, "shadow"), []byte("root:*:1::::::\n"), 0o600)
	os.WriteFile(filepath.Join(src, "ssl", "certs", "ca.pem"), []byte("pem"), 0o644)
	os.Symlink("/proc/self/mounts", filepath.Join(src, "mtab"))
	if err := CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "ssl", "certs", "ca.pem")); string(b) != "pem" {
		t.Errorf("nested file = %q", b)
	}
	if st, err := os.Stat(filepath.Join(dst, "shadow")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("shadow mode: %v %v", st, err)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "mtab")); l != "/proc/self/mounts" {
		t.Errorf("symlink = %q", l)
	}
}

func mountOf(target, fs string) (m mounts.Mount) {
	m.Target, m.FSType = target, fs
	return m
}

// fakeSystem builds the world stage 1 sees: /proc/cmdline, sysfs with a
// virtio disk, /dev/vda as a real GPT image file, and a new root with /etc.
func fakeSystem(t *testing.T, cmdline string, parts []string) (Env, *[]string, string) {
	t.Helper()
	base := t.TempDir()
	e := Env{
		Proc: filepath.Join(base, "proc"), Sys: filepath.Join(base, "sys"), Dev: filepath.Join(base, "dev"),
		Root: filepath.Join(base, "initramfs"), NewRoot: filepath.Join(base, "newroot"), EtcStage: filepath.Join(base, ".etc"),
		WaitTimeout: 200 * time.Millisecond,
	}
	for _, d := range []string{e.Proc, e.Dev, e.Root, filepath.Join(e.NewRoot, "etc")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(e.Proc, "cmdline"), []byte(cmdline+"\n"), 0o644)
	os.WriteFile(filepath.Join(e.NewRoot, "etc", "os-release"), []byte("VERSION_ID=0.1\n"), 0o644)

	// Disk image: 64 MiB, partitions of 8 MiB, state last; the file is 96 MiB.
	img := filepath.Join(e.Dev, "vda")
	d, err := diskfs.Create(img, 64<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	var gp []*gpt.Partition
	for i, name := range parts {
		gp = append(gp, &gpt.Partition{Index: i + 1, Start: uint64(2048 + i*16384), End: uint64(2048 + (i+1)*16384 - 1), Type: gpt.LinuxFilesystem, Name: name})
	}
	if err := d.Partition(&gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: gp}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	os.Truncate(img, 96<<20)

	diskDir := filepath.Join(e.Sys, "devices", "virtio0", "block", "vda")
	cls := filepath.Join(e.Sys, "class", "block")
	os.MkdirAll(cls, 0o755)
	add := func(dir, ue string) {
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "uevent"), []byte(ue), 0o644)
		os.WriteFile(filepath.Join(dir, "size"), []byte("16384\n"), 0o644)
		os.Symlink(dir, filepath.Join(cls, filepath.Base(dir)))
	}
	add(diskDir, "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n")
	for i, name := range parts {
		add(filepath.Join(diskDir, fmt.Sprintf("vda%d", i+1)), fmt.Sprintf("MAJOR=254\nMINOR=%d\nDEVNAME=vda%d\nDEVTYPE=partition\nPARTN=%d\nPARTNAME=%s\n", i+1, i+1, i+1, name))
	}

	var calls []string
	e.Mount = func(src, tgt, fs string, fl uintptr, data string) error {
		calls = append(calls, fmt.Sprintf("%s %s %s", fs, src, tgt))
		if fs == "squashfs" && strings.Contains(cmdline, "corrupt") {
			return syscall.EINVAL
		}
		return nil
	}
	var now time.Duration = time.Second
	e.Clock = func() time.Duration { now += 100 * time.Millisecond; return now }
	e.Console = &bytes.Buffer{}
	return e, &calls, img
}

func TestRunBootsSlot(t *testing.T) {
	e, calls, img := fakeSystem(t, "console=ttyS0 kestrel.slot=b", []string{"esp", "root-a", "root-b", "state"})
	var switched string
	e.SwitchRoot = func(nr, init string) error { switched = nr + " " + init; return errors.New("test stops here") }
	err := Run(e)
	if err == nil || !strings.Contains(err.Error(), "test stops here") {
		t.Fatalf("Run: %v\nconsole:\n%s", err, e.Console)
	}
	if switched != e.NewRoot+" /sbin/init" {
		t.Errorf("switched = %q", switched)
	}
	all := strings.Join(*calls, "\n")
	for _, want := range []string{"squashfs " + e.Dev + "/vda3 " + e.NewRoot, "ext4 " + e.Dev + "/vda4 " + e.NewRoot + "/state", "proc proc " + e.Proc} {
		if !strings.Contains(all, want) {
			t.Errorf("no mount %q in\n%s", want, all)
		}
	}
	// The state partition of the image file now reaches the end of the disk.
	f, _ := os.Open(img)
	tab, err := gpt.Read(f, 512, 512)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if last := tab.Partitions[3]; last.Name != "state" || last.End < 96<<20/512-2048-34 {
		t.Errorf("state not grown: %+v", last)
	}
	if !strings.Contains(e.Console.(*bytes.Buffer).String(), "grew state partition vda4") {
		t.Errorf("console:\n%s", e.Console)
	}
	times, err := boottime.Read(filepath.Join(e.NewRoot, layout.BootTimes))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := times.Get(boottime.Kernel); k != 1100*time.Millisecond {
		t.Errorf("kernel time = %v", k)
	}
	if b, _ := os.ReadFile(filepath.Join(e.EtcStage, "os-release")); string(b) != "VERSION_ID=0.1\n" {
		t.Errorf("/etc not copied: %q", b)
	}
}

func TestRunBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, cmdline string
		parts         []string
		want          []string
	}{
		{"missing root", "kestrel.slot=a", []string{"esp", "root-b", "state"},
			[]string{`"root-a"`, "block devices found", "vda2", "root-b"}},
		{"corrupt root", "kestrel.slot=a corrupt", []string{"esp", "root-a", "root-b", "state"},
			[]string{"could not mount", "not hold a valid squashfs", "root-a", "vda4"}},
		{"bad slot", "kestrel.slot=c", []string{"esp"}, []string{`kestrel.slot="c"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := fakeSystem(t, tc.cmdline, tc.parts)
			e.SwitchRoot = func(string, string) error { t.Fatal("switched root on bad input"); return nil }
			err := Run(e)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
