package boottest

import (
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// TestKexecReboot boots the default image with kestrel.kexec_reboot on
// the command line, puts the booted slot on trial the way an upgrade's
// entry looks (kestrel-a+3.conf), and reboots: the reboot must start
// the next kernel itself (qemu runs with -no-reboot, so a reboot through
// the firmware would end it), count the slot's try as systemd-boot would
// (+3 -> +2-1), come up ready on the same machine with the entry's
// command line (no loader-added initrd=), and mark the slot good again;
// `kestrel reboot --firmware` then goes through the firmware.
func TestKexecReboot(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	disk := diskWithOptions(t, img.Disk, filepath.Join(dir, "kexec.img"), "kestrel.kexec_reboot")
	m, ready := bootVM(t, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir})
	if ready["slot"] != "a" {
		t.Fatalf("ready line names slot %q, want a", ready["slot"])
	}
	entries := path.Join(layout.ESPMount, layout.ESPEntriesDir)
	good := path.Join(entries, layout.ESPEntryNamePrefix+"a.conf")
	// This boot's own trial marks slot a good once the whole root has
	// been read through dm-verity, and would undo the rename below if it
	// came first: wait for that read (its line in the kernel log) and
	// for the marking, which follows it at once.
	out, err := m.MustRun("for i in $(seq 90); do dmesg | grep -q 'root verified' && break; sleep 1; done; sleep 2; mv "+good+" "+path.Join(entries, layout.ESPEntryNamePrefix+"a+3.conf")+"; ls "+entries, cmdTimeout+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) != 1 || got[0] != layout.ESPEntryNamePrefix+"a+3.conf" {
		t.Fatalf("entries with slot a on trial: %q", got)
	}

	if err := m.Send("kestrel reboot\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Expect(regexp.MustCompile(`reboot: into slot a, on trial, without the firmware \(kexec; 2 tries left`), cmdTimeout); err != nil {
		t.Fatalf("%v\n--- console ---\n%s", err, tail(m.Console(), 40))
	}
	line, err := m.Expect(readyRE, bootTimeout) // fails if qemu exited: a firmware reboot
	if err != nil {
		t.Fatalf("no ready line after the kexec reboot: %v\n--- console ---\n%s", err, tail(m.Console(), 60))
	}
	if f := vm.Fields(line[0]); f["slot"] != "a" {
		t.Errorf("after the kexec reboot the ready line names slot %q, want a", f["slot"])
	}
	if _, err := m.MustRun("dmesg -n 1", cmdTimeout); err != nil {
		t.Fatal(err)
	}
	cmdline, err := m.MustRun("cat /proc/cmdline", cmdTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cmdline, "initrd=") || !strings.Contains(cmdline, "kestrel.slot=a") || !strings.Contains(cmdline, "kestrel.kexec_reboot") {
		t.Errorf("command line %q: want the entry's options and kestrel.slot=a, without the initrd= systemd-boot adds", cmdline)
	}
	// The boot counted its try (+2-1) and, healthy (no k3s in this
	// image), stage 2 marked the slot good again.
	out, err = m.MustRun("for i in $(seq 60); do [ -e "+good+" ] && break; sleep 1; done; ls "+entries, cmdTimeout+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) != 1 || got[0] != layout.ESPEntryNamePrefix+"a.conf" {
		t.Errorf("entries after the kexec boot: %q, want slot a good again", got)
	}

	// --firmware: the full cycle even so, which ends qemu (-no-reboot).
	if err := m.Send("kestrel reboot --firmware\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Wait(3 * time.Minute); err != nil {
		t.Fatalf("kestrel reboot --firmware: qemu did not exit: %v\n--- console ---\n%s", err, tail(m.Console(), 30))
	}
}
