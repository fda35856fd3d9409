package boottest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/test/vm"
)

// TestHangingBootCmd boots a config whose boot_cmd never exits (issue 10,
// item 2): the node still becomes ready, SSH and the console work, and
// `kestrel reboot` reboots, all well inside the command's deadline (20
// minutes here, so that it is not the deadline that frees the boot).
func TestHangingBootCmd(t *testing.T) {
	t.Parallel()
	e := newCfgEnv(t)
	img := buildImage(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("ssh_authorized_keys: ['%s']\nboot_cmd: ['sleep 100000']\nkestrel:\n  command_timeout: 20m\n", e.pubA)
	disk := withESPConfig(t, img, dir, cfg)
	start := time.Now()
	m, _ := bootVM(t, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir,
		HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:22", e.sshPort)}})
	c := console{t, m}
	// The console answers (bootVM ran a command on it), and the command
	// is still running behind it.
	c.expect("ps | grep -q '[s]leep 100000' && echo running", "running")
	e.waitSSH(t, "kestrel", e.keyA)
	if out, err := e.ssh("kestrel", e.keyA, "id -un"); err != nil || strings.TrimSpace(out) != "kestrel" {
		t.Errorf("ssh: %q, %v", out, err)
	}
	m.Send("kestrel reboot\n")
	code, err := m.Wait(2 * time.Minute) // -no-reboot: qemu exits on the reboot
	if err != nil || code != 0 {
		t.Fatalf("reboot: qemu exit %d, %v\n%s", code, err, tail(m.Console(), 30))
	}
	out := m.Console()
	if !strings.Contains(out, "reboot requested") || strings.Contains(out, "timed out") {
		t.Errorf("console:\n%s", tail(out, 30))
	}
	t.Logf("ready, SSH and reboot %v after power-on, deadline 20m", time.Since(start).Round(time.Second))
}

// TestFullStateFault fills the state partition to 100 % while k3s (the
// stand-in, logging every 200 ms) and sshd run (issue 10, item 6):
// neither restarts, `kestrel status` says the disk is full and which logs
// fail, and freeing the space brings the logs back without a reboot.
func TestFullStateFault(t *testing.T) {
	t.Parallel()
	e := newCfgEnv(t)
	img := buildImageWith(t, imageOpts{Name: "test-standin", K3s: "standin"})
	dir := t.TempDir()
	cfg := fmt.Sprintf("ssh_authorized_keys: ['%s']\nkestrel:\n  environment: {K3S_STANDIN_LOG_EVERY: \"0.2\"}\n  k3s: {role: server, health_timeout: 2m}\n", e.pubA)
	disk := withESPConfig(t, img, dir, cfg)
	m, _ := bootVM(t, vm.Config{Disk: disk, Dir: dir, HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:22", e.sshPort)}})
	g := guest{console{t, m}}
	g.waitHealth(healthWait)
	e.waitSSH(t, "kestrel", e.keyA)
	before := g.status()
	k3s, _ := before.service("k3s")
	sshd, _ := before.service("sshd")
	if k3s.PID == 0 || sshd.PID == 0 {
		t.Fatalf("k3s or sshd not running: %+v", before.Services)
	}

	g.run("dd if=/dev/zero of=/var/fill bs=1M 2>/dev/null; sync; df -k /state | tail -1")
	waitStatus := func(what string, cond func(statusJSON) bool) statusJSON {
		t.Helper()
		var st statusJSON
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
			if st = g.status(); cond(st) {
				return st
			}
		}
		t.Fatalf("%s: status %+v\n%s", what, st, tail(m.Console(), 30))
		return st
	}
	full := waitStatus("k3s's log failing", func(st statusJSON) bool {
		s, _ := st.service("k3s")
		return strings.Contains(s.LogError, "no space left")
	})
	if !slicesContain(full.Warnings, "state partition /state is full") {
		t.Errorf("status warnings do not say the disk is full: %q", full.Warnings)
	}
	// sshd writes a log line per connection: into the full disk too.
	for i := 0; i < 3; i++ {
		if out, err := e.ssh("kestrel", e.keyA, "echo ok"); err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("ssh %d on a full disk: %q, %v", i, out, err)
		}
	}
	time.Sleep(5 * time.Second) // let k3s write a few dozen lines more into the full disk
	check := func(when string, st statusJSON) {
		t.Helper()
		for _, want := range []struct {
			name string
			pid  int
		}{{"k3s", k3s.PID}, {"sshd", sshd.PID}} {
			s, _ := st.service(want.name)
			if s.PID != want.pid || s.State != "running" {
				t.Errorf("%s: %s was restarted: %+v (pid before %d)", when, want.name, s, want.pid)
			}
		}
	}
	check("disk full", g.status())

	g.run("rm /var/fill; sync")
	freed := waitStatus("logs back", func(st statusJSON) bool {
		s, _ := st.service("k3s")
		return s.LogError == "" && !slicesContain(st.Warnings, "is full")
	})
	check("space freed", freed)
	last := g.run("tail -n 1 /var/log/k3s.log")
	if !regexp.MustCompile(`still running, log line \d+`).MatchString(last) {
		t.Errorf("k3s log after freeing space ends with %q", last)
	}
	if n := strings.Count(m.Console(), "KESTREL-READY"); n != 1 {
		t.Errorf("the node booted %d times", n)
	}
}

func slicesContain(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
