//go:build slow

package boottest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/test/vm"
)

// Behind the slow tag (~1 min): the default suite installs unattended
// (TestISOInstall, the same kestrel install underneath); this one drives
// the interactive questions over the serial console.

// TestISOInstallInteractive drives `kestrel install` over the serial
// console of the ISO booted as a USB stick, answering its questions as an
// operator would: the disk (the stick is listed as in use), no config
// file, no GitHub users, a password, agent with a server URL and token,
// then the confirmation. The disk alone then boots with that config: the
// password hashed, the stand-in k3s started as an agent of that server.
func TestISOInstallInteractive(t *testing.T) {
	t.Parallel()
	_, iso := buildISO(t)
	dir := t.TempDir()
	keepConsoleIn(t, dir)
	disk := blankDisk(t, t.TempDir(), 3<<30)
	m, _ := bootVM(t, vm.Config{USB: iso, Disk: disk, Dir: dir})
	if err := m.Send("kestrel install --power-off\n"); err != nil {
		t.Fatal(err)
	}
	expect := func(re string) []string {
		t.Helper()
		got, err := m.Expect(regexp.MustCompile(re), 2*time.Minute)
		if err != nil {
			t.Fatalf("installer: %v\n--- console ---\n%s", err, tail(m.Console(), 40))
		}
		return got
	}
	answer := func(prompt, text string) {
		t.Helper()
		expect(regexp.QuoteMeta(prompt))
		if err := m.Send(text + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	vda := expect(`(\d+)\) /dev/vda +3\.0 GiB`)[1]
	if !strings.Contains(m.Console(), "/dev/sda") || !strings.Contains(m.Console(), "in use: ") {
		t.Errorf("the stick should be listed as in use:\n%s", tail(m.Console(), 10))
	}
	answer("Install to which disk?", vda)
	answer("Config file or URL to install", "")
	answer("GitHub users whose SSH keys may log in", "")
	answer("Password for the kestrel user", "s3cret-pass")
	answer("Run k3s as server or agent?", "agent")
	answer("Server URL", "https://10.0.2.2:6443")
	answer("Token:", "K10-interactive-token")
	shown := expect(`(?s)Config to install.*?---\n(.*?)---\n`)[1]
	for _, want := range []string{"server_url: https://10.0.2.2:6443", "token: K10-interactive-token", "password: $6$"} {
		if !strings.Contains(shown, want) {
			t.Errorf("config shown before confirmation lacks %q:\n%s", want, shown)
		}
	}
	answer("Install Kestrel to /dev/vda?", "y")
	expect(`installed Kestrel ` + regexp.QuoteMeta(isoVersion) + ` on /dev/vda`)
	if _, err := m.Wait(3 * time.Minute); err != nil {
		t.Fatalf("no power-off after the install: %v\n%s", err, tail(m.Console(), 30))
	}

	// OVMF keeps a boot option for the stick at PCI slot 2, where the
	// virtio disk sits once the USB controller is gone, and goes to PXE
	// instead of finding the disk's ESP; a real machine's firmware looks
	// again. A fresh variable store stands for that.
	if err := os.Remove(filepath.Join(dir, "efivars.fd")); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cfg: vm.Config{Disk: disk, Dir: dir}}
	if r := n.boot(); r["slot"] != "a" || r["version"] != isoVersion {
		t.Fatalf("installed disk's first boot: %v", r)
	}
	n.g.expect("stat -c '%a' /state/kestrel/config.yaml", "600")
	n.g.expect("grep -c 's3cret-pass' /state/kestrel/config.yaml || true", "0")
	var rec standinRecord
	waitFor(t, "the k3s stand-in started", func() bool {
		_, ok := n.g.readFile("/var/lib/rancher/k3s-standin/record.json")
		return ok
	}, n)
	n.g.readJSON("/var/lib/rancher/k3s-standin/record.json", &rec)
	if rec.Role != "agent" {
		t.Errorf("stand-in role %q, want agent (argv %v)", rec.Role, rec.Argv)
	}
}
