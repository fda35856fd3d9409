package power

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

const mountinfo = `20 1 254:2 / / ro,relatime - squashfs /dev/vda2 ro
21 20 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw
22 20 0:20 / /proc rw - proc proc rw
23 20 0:21 / /sys rw - sysfs sysfs rw
24 20 254:4 / /state rw,noatime - ext4 /dev/vda4 rw
25 20 254:4 /var /var rw,noatime - ext4 /dev/vda4 rw
26 20 254:4 /home /home rw,noatime - ext4 /dev/vda4 rw
27 20 0:30 / /run rw - tmpfs tmpfs rw
28 23 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
29 21 0:32 / /dev/pts rw - devpts devpts rw
30 20 254:1 / /boot/efi rw - vfat /dev/vda1 rw
`

func TestUnmountPlan(t *testing.T) {
	in, _ := mounts.ParseMountinfo(strings.NewReader(mountinfo))
	got := strings.Join(UnmountPlan(in), " ")
	want := "/boot/efi /dev/pts /sys/fs/cgroup /run /home /var /state"
	if got != want {
		t.Errorf("UnmountPlan = %s\nwant %s", got, want)
	}
}

func TestShutdownSequence(t *testing.T) {
	var calls []string
	mounted, _ := mounts.ParseMountinfo(strings.NewReader(mountinfo))
	s := Shutdown{
		StopServices: func() { calls = append(calls, "stop") },
		KillAll:      func(sig syscall.Signal) { calls = append(calls, "kill "+sig.String()) },
		Settle:       time.Second,
		Remaining:    func() int { return 1 }, // one process ignores SIGTERM
		Sleep:        func(d time.Duration) { calls = append(calls, "sleep "+d.String()) },
		Sync:         func() { calls = append(calls, "sync") },
		ReadMounts:   func() ([]mounts.Info, error) { return mounted, nil },
		Unmount: func(t string) error {
			// /var is busy (a process we could not kill holds a file).
			if t == "/var" || t == "/state" {
				return syscall.EBUSY
			}
			for i, m := range mounted {
				if m.Target == t {
					mounted = append(mounted[:i:i], mounted[i+1:]...)
					break
				}
			}
			calls = append(calls, "umount "+t)
			return nil
		},
		RemountRO: func(t string) error { calls = append(calls, "ro "+t); return nil },
		Reboot: func(cmd int) error {
			calls = append(calls, fmt.Sprintf("reboot %#x", uint32(cmd)))
			return errors.New("still here")
		},
		Logf: func(string, ...any) {},
	}
	if err := s.Run(Poweroff); err == nil {
		t.Error("Run returned nil although reboot failed")
	}
	got := strings.Join(calls, "; ")
	want := "stop; kill terminated; " + strings.Repeat("sleep 50ms; ", 20) + "kill killed; sync; " +
		"umount /boot/efi; umount /dev/pts; umount /sys/fs/cgroup; umount /run; umount /home; " +
		"ro /var; ro /state; sync; reboot 0x4321fedc"
	if got != want {
		t.Errorf("sequence:\n%s\nwant\n%s", got, want)
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []Action{Poweroff, Reboot, Halt, RebootFirmware} {
		if b, err := ParseAction(a.String()); err != nil || b != a {
			t.Errorf("ParseAction(%s) = %v, %v", a, b, err)
		}
	}
	if _, err := ParseAction("explode"); err == nil {
		t.Error("unknown action accepted")
	}
	if uint32(Reboot.RebootCmd()) != syscall.LINUX_REBOOT_CMD_RESTART || uint32(RebootFirmware.RebootCmd()) != syscall.LINUX_REBOOT_CMD_RESTART {
		t.Error("reboot cmd")
	}
}

func TestIsPowerPress(t *testing.T) {
	ev := func(typ, code uint16, val int32) []byte {
		b := make([]byte, eventSize)
		tail := b[eventSize-8:]
		binary.NativeEndian.PutUint16(tail[0:], typ)
		binary.NativeEndian.PutUint16(tail[2:], code)
		binary.NativeEndian.PutUint32(tail[4:], uint32(val))
		return b
	}
	for _, tc := range []struct {
		ev   []byte
		want bool
	}{
		{ev(evKey, keyPower, 1), true},
		{ev(evKey, keyPower, 0), false}, // release
		{ev(evKey, 30, 1), false},       // 'a'
		{ev(0, 0, 0), false},            // SYN
		{make([]byte, 3), false},
	} {
		if got := IsPowerPress(tc.ev); got != tc.want {
			t.Errorf("IsPowerPress(%v) = %v", tc.ev, got)
		}
	}
}

func TestFromSignal(t *testing.T) {
	for sig, want := range map[syscall.Signal]Action{
		syscall.SIGUSR2: Poweroff, syscall.SIGPWR: Poweroff,
		syscall.SIGTERM: Reboot, syscall.SIGINT: Reboot, syscall.SIGUSR1: Halt,
	} {
		if got := FromSignal(sig); got != want {
			t.Errorf("%v -> %v, want %v", sig, got, want)
		}
	}
	if len(Signals) != 5 {
		t.Errorf("Signals = %v", Signals)
	}
}

// A shutdown whose clean sequence hangs (a service that never stops, an
// unmount stuck on a dead disk) still reaches reboot(2): after Deadline,
// or at once on a second request; sync is bounded too.
// TestShutdownKexec: a reboot asks Kexec first, while everything is still
// mounted, and ends in the loaded kernel when Kexec loaded one; when that
// fails, or nothing was loaded, or the action is not a reboot, it is the
// firmware's.
func TestShutdownKexec(t *testing.T) {
	restart, kexec := fmt.Sprintf("reboot %#x", uint32(Reboot.RebootCmd())), fmt.Sprintf("reboot %#x", uint32(KexecCmd))
	for _, tc := range []struct {
		name      string
		action    Action
		loaded    bool
		kexecFail bool
		want      string
	}{
		{"loaded", Reboot, true, false, "load; stop; sync; sync; " + kexec},
		{"loaded, kexec fails", Reboot, true, true, "load; stop; sync; sync; " + kexec + "; " + restart},
		{"not loaded", Reboot, false, false, "load; stop; sync; sync; " + restart},
		{"poweroff", Poweroff, true, false, fmt.Sprintf("stop; sync; sync; reboot %#x", uint32(Poweroff.RebootCmd()))},
		{"reboot through the firmware", RebootFirmware, true, false, "stop; sync; sync; " + restart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			s := Shutdown{
				StopServices: func() { calls = append(calls, "stop") },
				KillAll:      func(syscall.Signal) {},
				Remaining:    func() int { return 0 },
				Sync:         func() { calls = append(calls, "sync") },
				ReadMounts:   func() ([]mounts.Info, error) { return nil, nil },
				RemountRO:    func(string) error { return nil },
				Reboot: func(cmd int) error {
					calls = append(calls, fmt.Sprintf("reboot %#x", uint32(cmd)))
					if cmd == int(int32(KexecCmd)) && !tc.kexecFail {
						return nil // the real one does not return
					}
					return errors.New("still here")
				},
				Logf:     func(string, ...any) {},
				Deadline: time.Minute,
				Kexec:    func() bool { calls = append(calls, "load"); return tc.loaded },
			}
			s.Run(tc.action)
			if got := strings.Join(calls, "; "); got != tc.want {
				t.Errorf("sequence:\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestShutdownForced(t *testing.T) {
	for _, tc := range []struct {
		name      string
		deadline  time.Duration
		force     bool
		syncHang  bool
		kexecHang bool
	}{
		{name: "deadline", deadline: time.Millisecond},
		{name: "second request", force: true},
		{name: "deadline, sync hangs", deadline: time.Millisecond, syncHang: true},
		{name: "deadline, the kexec load hangs", deadline: time.Millisecond, kexecHang: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hang := make(chan struct{})
			defer close(hang)
			force := make(chan struct{})
			rebooted := make(chan int, 1)
			s := Shutdown{
				StopServices: func() { <-hang }, // never returns
				Sync: func() {
					if tc.syncHang {
						<-hang
					}
				},
				KillAll:    func(syscall.Signal) {},
				Remaining:  func() int { return 0 },
				ReadMounts: func() ([]mounts.Info, error) { return nil, nil },
				RemountRO:  func(string) error { return nil },
				Reboot:     func(cmd int) error { rebooted <- cmd; return errors.New("still here") },
				Logf:       func(string, ...any) {}, // the hung sequence may log after the test
				Deadline:   tc.deadline,
				Force:      force,
				Kexec: func() bool { // loaded, but a forced reboot is the firmware's
					if tc.kexecHang {
						<-hang
					}
					return true
				},
				SyncWait: time.Millisecond,
			}
			if tc.force {
				close(force)
			}
			if err := s.Run(Reboot); err == nil {
				t.Error("Run returned nil although reboot failed")
			}
			if cmd := <-rebooted; cmd != Reboot.RebootCmd() {
				t.Errorf("reboot(%#x), want %#x", cmd, Reboot.RebootCmd())
			}
		})
	}
}
