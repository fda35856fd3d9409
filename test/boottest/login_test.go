package boottest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/kestrel-os/kestrel/test/vm"
)

// TestConsoleLogin boots with `kestrel.console_shell: false` (from a NoCloud
// disk) and a password for the default user: the console asks for a login
// instead of giving a root shell, refuses a wrong password, and a right
// one gets the user's shell as that user, not root.
func TestConsoleLogin(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	cidata := buildCIDATA(t, dir, filesystem.TypeFat32, map[string]string{
		"user-data": "#cloud-config\nkestrel:\n  console_shell: false\n  password: c0nsole-pass\n",
		"meta-data": "instance-id: iid-login\n",
	})
	log, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	m, err := vm.Start(vm.Config{Disk: img.Disk, DiskSize: "3G", Dir: dir, ExtraDrives: []string{cidata}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	if _, err := m.Expect(readyRE, bootTimeout); err != nil {
		t.Fatalf("boot: %v\n%s", err, tail(m.Console(), 60))
	}
	loginRE := regexp.MustCompile(`login: `)
	step := func(what string, re *regexp.Regexp, send string) {
		t.Helper()
		if _, err := m.Expect(re, cmdTimeout); err != nil {
			t.Fatalf("%s: %v\n--- console ---\n%s", what, err, tail(m.Console(), 30))
		}
		if send != "" {
			if err := m.Send(send); err != nil {
				t.Fatal(err)
			}
		}
	}
	step("login prompt", loginRE, "kestrel\n")
	step("password prompt", regexp.MustCompile(`Password: `), "wrong-pass\n")
	step("wrong password refused", regexp.MustCompile(`Login incorrect`), "")
	step("login prompt again", loginRE, "kestrel\n")
	step("password prompt again", regexp.MustCompile(`Password: `), "c0nsole-pass\n")
	// The shell prompt, then a command whose answer cannot be its echo.
	time.Sleep(time.Second)
	if err := m.Send("echo who-$(id -un)-uid$(id -u)-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	line, err := m.Expect(regexp.MustCompile(`who-(\w+)-uid(\d+)-42`), cmdTimeout)
	if err != nil {
		t.Fatalf("no shell after login: %v\n--- console ---\n%s", err, tail(m.Console(), 30))
	}
	if line[1] != "kestrel" || line[2] == "0" {
		t.Errorf("logged in as %s (uid %s), want kestrel, not root", line[1], line[2])
	}
	if strings.Contains(m.Console(), "console_shell: false is not supported") {
		t.Errorf("the node still reports console_shell: false as unsupported")
	}
}
