package phases

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/access/sshkeys"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
)

// fakeRoot is a node root in a temporary directory: account databases,
// a zoneinfo file, an empty /sys/class/block.
func fakeRoot(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root (chown of homes and files)")
	}
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd":                      "root:x:0:0:root:/root:/bin/sh\nkestrel:x:1000:1000::/home/kestrel:/bin/sh\n",
		"etc/group":                       "root:x:0:\nwheel:x:10:kestrel\nkestrel:x:1000:\n",
		"etc/shadow":                      "root:*:::::::\nkestrel:*:::::::\n",
		"usr/share/zoneinfo/Europe/Paris": tzifUTC,
		"usr/share/zoneinfo/UTC":          tzifUTC,
		"sys/class/block/.keep":           "",
		"state/kestrel/config.d/.keep":    "",
		"usr/lib/kestrel/config.yaml":     "kestrel:\n  timezone: UTC\n  environment: {FROM_DEFAULTS: '1'}\n",
		"proc/sys/vm/swappiness":          "60\n",
		"proc/sys/net/ipv4/ip_forward":    "0\n",
		"boot/efi/config.yaml":            "ssh_authorized_keys: ['" + keyA + "']\n",
		"proc/cmdline":                    "console=ttyS0 kestrel.slot=a\n",
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tzifUTC is a minimal valid TZif v1 file for UTC.
var tzifUTC = "TZif" + strings.Repeat("\x00", 16) +
	"\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x01" + "\x00\x00\x00\x04" +
	"\x00\x00\x00\x00\x00\x00" + "UTC\x00"

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestBootPhase runs the boot phase on a temporary root: every local
// source merges in order, a bad source is skipped whole and reported with
// file:line:col, and the boot keys land in the root.
func TestBootPhase(t *testing.T) {
	root := fakeRoot(t)
	marker := filepath.Join(t.TempDir(), "boot_cmd.out")
	state := `hostname: node-1
write_files:
  - {path: /etc/app/app.conf, content: "x=1\n", owner: "ops:wheel", permissions: "0640"}
boot_cmd:
  - echo "boot $FOO $FROM_DEFAULTS" > ` + marker + `
kestrel:
  timezone: Europe/Paris
  environment: {FOO: bar}
  users:
    - {name: ops, groups: [wheel], password: secret, ssh_authorized_keys: ['` + keyA + `', 'github:ops']}
`
	os.WriteFile(filepath.Join(root, "state", config.StateConfigFile), []byte(state), 0o644)
	bad := "hostname: half-applied\nkestrel:\n  sysctl: [x]\n"
	os.WriteFile(filepath.Join(root, "state", config.StateConfigDir, "10-bad.yaml"), []byte(bad), 0o644)

	r := New(Options{Root: root, ESP: filepath.Join(root, "boot/efi"), Cmdline: filepath.Join(root, "proc/cmdline")})
	if r.Config() != nil {
		t.Fatal("Config before the boot phase is not nil")
	}
	var log logBuf
	sys := &stage2.System{Logf: log.logf}
	if err := r.Boot(context.Background(), sys); err != nil {
		t.Fatal(err)
	}
	r.WaitCommands(context.Background()) // boot_cmd runs in the background
	out := log.String()
	if !strings.Contains(out, "warning: config: "+filepath.Join(root, "state", config.StateConfigDir, "10-bad.yaml")+":3:11: kestrel.sysctl: ") {
		t.Errorf("bad source not reported with file:line:col:\n%s", out)
	}
	if len(r.Errors()) != 1 {
		t.Errorf("Errors() = %v, want the one bad source", r.Errors())
	}
	c := r.Config()
	if c == nil || c.Hostname != "node-1" || sys.Hostname != "node-1" {
		t.Fatalf("hostname: config %v, system %q", c, sys.Hostname)
	}
	if !strings.HasPrefix(c.Kestrel.Users[0].Password, "$6$") {
		t.Errorf("Config() password is not hashed: %q", c.Kestrel.Users[0].Password)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	for path, want := range map[string]string{
		"etc/hostname":                      "node-1\n",
		"etc/timezone":                      "Europe/Paris\n",
		"etc/app/app.conf":                  "x=1\n",
		"home/kestrel/.ssh/authorized_keys": keyA + "\n", // from the ESP
		"home/ops/.ssh/authorized_keys":     keyA + "\n", // github: waits for network-up
	} {
		if got := read(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if got := read("etc/environment"); !strings.Contains(got, `FOO="bar"`) || !strings.Contains(got, `FROM_DEFAULTS="1"`) {
		t.Errorf("/etc/environment:\n%s", got)
	}
	if got, _ := os.Readlink(filepath.Join(root, "etc/localtime")); got != "/usr/share/zoneinfo/Europe/Paris" {
		t.Errorf("/etc/localtime -> %q", got)
	}
	if shadow := read("etc/shadow"); !strings.Contains(shadow, "ops:$6$") || !strings.Contains(shadow, "kestrel:*:") {
		t.Errorf("/etc/shadow:\n%s", shadow)
	}
	if got, _ := os.ReadFile(marker); string(got) != "boot bar 1\n" {
		t.Errorf("boot_cmd wrote %q\n%s", got, out)
	}
	if !PasswordAuth(c) {
		t.Error("PasswordAuth false with a configured password")
	}
}

// TestInitramfsPhase applies modules (dry: none listed), sysctl and
// init_cmd to a temporary tree, in that order, and reports a bad sysctl
// without stopping init_cmd.
func TestInitramfsPhase(t *testing.T) {
	root := fakeRoot(t)
	marker := filepath.Join(t.TempDir(), "init.out")
	c := parse(t, `init_cmd:
  - echo "init $(cat `+filepath.Join(root, "proc/sys/vm/swappiness")+`)" >> `+marker+`
kestrel:
  sysctl: {vm.swappiness: "17", net.ipv4.no_such_key: "1"}
`)
	var log logBuf
	ApplyInitramfs(context.Background(), c, InitramfsTarget{Root: root, ProcSys: filepath.Join(root, "proc/sys"), Logf: log.logf},
		func(f string, a ...any) { log.logf("warning: "+f, a...) })
	if got, _ := os.ReadFile(filepath.Join(root, "proc/sys/vm/swappiness")); string(got) != "17\n" {
		t.Errorf("swappiness = %q", got)
	}
	if got, _ := os.ReadFile(marker); string(got) != "init 17\n" {
		t.Errorf("init_cmd wrote %q (sysctl must come first)", got)
	}
	if !strings.Contains(log.String(), `warning: kestrel.sysctl: sysctl "net.ipv4.no_such_key": no such key`) {
		t.Errorf("log:\n%s", log.String())
	}
}

// TestNetworkUpPhase reads config_url after the boot phase: the keys it
// changes apply late, URL keys are fetched and added, run_cmd runs with
// the final environment, and the cache records every document.
func TestNetworkUpPhase(t *testing.T) {
	root := fakeRoot(t)
	keyB := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb3vLlX5uQq2JmjS4mS1rU8B1tq2pYtq6qlVZ7o5d0R b@test"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, keyB) }))
	defer srv.Close()
	marker := filepath.Join(t.TempDir(), "run_cmd.out")
	os.WriteFile(filepath.Join(root, "state", config.StateConfigFile), []byte(`hostname: before
ssh_authorized_keys: ['`+keyA+`', '`+srv.URL+`/keys']
run_cmd: ['echo "run $LATE" > `+marker+`']
kestrel:
  config_url: file:///srv/late.yaml
  environment: {EARLY: "1"}
`), 0o644)
	os.MkdirAll(filepath.Join(root, "srv"), 0o755)
	os.WriteFile(filepath.Join(root, "srv/late.yaml"), []byte("hostname: after\nkestrel:\n  environment: {LATE: late}\n"), 0o644)

	cache := filepath.Join(t.TempDir(), "datasources.json")
	r := New(Options{Root: root, ESP: filepath.Join(root, "boot/efi"), Cmdline: filepath.Join(root, "proc/cmdline"),
		Cache: cache, Net: datasource.Env{FileRoot: root}, Keys: &sshkeys.Resolver{Client: srv.Client()}})
	var log logBuf
	sys := &stage2.System{Logf: log.logf}
	if err := r.NetworkUp(context.Background(), sys); err == nil {
		t.Error("NetworkUp before Boot: no error")
	}
	if err := r.Boot(context.Background(), sys); err != nil {
		t.Fatal(err)
	}
	if err := r.NetworkUp(context.Background(), sys); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitCommands(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := r.Config(); c.Hostname != "after" || c.Kestrel.Environment["LATE"] != "late" || sys.Hostname != "after" {
		t.Errorf("after network-up: hostname %q (system %q), environment %v", c.Hostname, sys.Hostname, c.Kestrel.Environment)
	}
	env, _ := os.ReadFile(filepath.Join(root, EnvironmentPath))
	if !strings.Contains(string(env), `LATE="late"`) || !strings.Contains(string(env), `EARLY="1"`) {
		t.Errorf("/etc/environment not rewritten:\n%s", env)
	}
	if keys, _ := os.ReadFile(filepath.Join(root, "home/kestrel/.ssh/authorized_keys")); string(keys) != keyA+"\n"+keyB+"\n" {
		t.Errorf("authorized_keys = %q", keys)
	}
	if got, _ := os.ReadFile(marker); string(got) != "run late\n" {
		t.Errorf("run_cmd wrote %q\n%s", got, log.String())
	}
	c, err := datasource.LoadCache(cache)
	if err != nil || len(c.Documents) != 1 || c.Documents[0].Name != "file:///srv/late.yaml" {
		t.Errorf("cache %+v, %v", c, err)
	}
	if strings.Contains(log.String(), "warning") {
		t.Errorf("warnings:\n%s", log.String())
	}
}

// TestRemoteKeysSurviveOutage: keys a URL gave once stay in
// authorized_keys on the next boot, before the network and after a failed
// fetch (issue 10, low: a failing remote source must not remove access).
func TestRemoteKeysSurviveOutage(t *testing.T) {
	root := fakeRoot(t)
	keyB := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb3vLlX5uQq2JmjS4mS1rU8B1tq2pYtq6qlVZ7o5d0R b@test"
	up := true
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, keyB)
	}))
	defer srv.Close()
	os.WriteFile(filepath.Join(root, "state", config.StateConfigFile), []byte(`ssh_authorized_keys: ['`+keyA+`', '`+srv.URL+`/keys']
`), 0o644)
	keysFile := filepath.Join(root, "home/kestrel/.ssh/authorized_keys")
	keyCache := filepath.Join(root, "var/lib/kestrel/ssh-keys.json")
	boot := func() (*Runner, *stage2.System, *logBuf) {
		r := New(Options{Root: root, ESP: filepath.Join(root, "boot/efi"), Cmdline: filepath.Join(root, "proc/cmdline"),
			Net: datasource.Env{FileRoot: root}, Keys: &sshkeys.Resolver{Client: srv.Client(), CachePath: keyCache}})
		var log logBuf
		sys := &stage2.System{Logf: log.logf}
		if err := r.Boot(context.Background(), sys); err != nil {
			t.Fatal(err)
		}
		return r, sys, &log
	}
	r, sys, _ := boot()
	if err := r.NetworkUp(context.Background(), sys); err != nil {
		t.Fatal(err)
	}
	both := keyA + "\n" + keyB + "\n"
	if got, _ := os.ReadFile(keysFile); string(got) != both {
		t.Fatalf("first boot: authorized_keys = %q", got)
	}

	up = false
	r, sys, log := boot()
	if got, _ := os.ReadFile(keysFile); string(got) != both {
		t.Errorf("next boot, before the network: authorized_keys = %q, want the fetched key kept", got)
	}
	if err := r.NetworkUp(context.Background(), sys); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(keysFile); string(got) != both {
		t.Errorf("source down at network-up: authorized_keys = %q, want the fetched key kept", got)
	}
	if !strings.Contains(log.String(), "503") {
		t.Errorf("the failing source is not reported:\n%s", log.String())
	}
}
