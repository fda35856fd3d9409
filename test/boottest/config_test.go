package boottest

import (
	"github.com/kestrel-os/kestrel/internal/node/net/ntp/ntptest"

	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// The config boot tests give the VM a NoCloud CIDATA disk built here (vfat
// or iso9660, user-data + meta-data), an ext4 data disk for kestrel.mounts and two
// more NICs on isolated user-mode networks for static addresses, a VLAN
// and a bond, and serve, on the host loopback (10.0.2.2 from the guest),
// a config_url document, an authorized_keys file and an NTP answer. They
// check the effects from the console and over SSH with the host's ssh.

// hostFromGuest is the host's loopback as qemu's user networking shows it.
const hostFromGuest = "10.0.2.2"

// ntpOffset is how far ahead of the host the test's NTP server is.
const ntpOffset = 50 * 24 * time.Hour

// cfgEnv is what one config boot test sets up on the host.
type cfgEnv struct {
	dir            string
	keyA, keyB     string // private key files
	pubA, pubB     string // their public keys
	sshPort        int
	httpPort       int
	ntpPort        int
	extraYAML      string // served as /extra.yaml (config_url)
	dataDisk       string // ext4 labelled KDATA
	hostKnownHosts string
}

func newCfgEnv(t *testing.T) *cfgEnv {
	t.Helper()
	for _, tool := range []string{"ssh", "ssh-keygen", "scp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	e := &cfgEnv{dir: t.TempDir()}
	e.keyA, e.pubA = sshKeygen(t, e.dir, "id_a")
	e.keyB, e.pubB = sshKeygen(t, e.dir, "id_b")
	e.sshPort = freePort(t)
	e.hostKnownHosts = filepath.Join(e.dir, "known_hosts")
	e.extraYAML = "kestrel:\n  environment:\n    LATE: from-config-url\n"

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.httpPort = l.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, e.pubB) })
	mux.HandleFunc("/extra.yaml", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, e.extraYAML) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	e.ntpPort = ntpServer(t, ntpOffset)

	data := filepath.Join(e.dir, "data")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "hello.txt"), []byte("data disk\n"), 0o644)
	e.dataDisk = filepath.Join(e.dir, "data.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "KDATA", "-d", data, e.dataDisk, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return e
}

// vmConfig is a machine with the CIDATA and data disks, two extra NICs and
// SSH forwarded to the host loopback.
func (e *cfgEnv) vmConfig(img *Image, dir, cidata string) vm.Config {
	return vm.Config{Disk: img.Disk, DiskSize: "3G", Dir: dir, Memory: 1024,
		ExtraDrives: []string{cidata, e.dataDisk}, ExtraNICs: 2,
		HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:22", e.sshPort)}}
}

// ssh runs command as user with key over the forwarded port.
func (e *cfgEnv) ssh(user, key, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(e.sshOpts(key), "-p", strconv.Itoa(e.sshPort), user+"@127.0.0.1", command)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sshPassword runs command as user logging in with password only.
func (e *cfgEnv) sshPassword(user, password, command string) (string, error) {
	askpass := filepath.Join(e.dir, "askpass-"+user)
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\necho '"+password+"'\n"), 0o700); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
		"-o", "NumberOfPasswordPrompts=1", "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile="+e.hostKnownHosts,
		"-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "-p", strconv.Itoa(e.sshPort), user+"@127.0.0.1", command)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none")
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *cfgEnv) sshOpts(key string) []string {
	return []string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
		"-o", "UserKnownHostsFile=" + e.hostKnownHosts, "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR"}
}

// waitSSH retries until the SSH server lets user in with key.
func (e *cfgEnv) waitSSH(t *testing.T, user, key string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := e.ssh(user, key, "true")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh %s: %v\n%s", user, err, out)
		}
		time.Sleep(2 * time.Second)
	}
}

// kestrelUserData touches every key group, in Kestrel's own spelling.
func (e *cfgEnv) kestrelUserData() string {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("gzip content\n"))
	zw.Close()
	return fmt.Sprintf(`#cloud-config
hostname: kestrel-cfg
ssh_authorized_keys:
  - %s
  - http://%s:%d/keys
write_files:
  - path: /etc/kestrel-test/plain.conf
    content: "plain text\n"
    owner: kestrel:kestrel
    permissions: "0640"
  - path: /var/lib/kestrel-test/b64.txt
    encoding: b64
    content: %s
    permissions: "0600"
  - path: /var/lib/kestrel-test/gz.txt
    encoding: gz+b64
    content: %s
    owner: ops:wheel
    permissions: "0604"
init_cmd:
  - echo "init pid1=$(tr '\0' ' ' </proc/1/cmdline)" >> /run/phases.log
  - test -e /state/kestrel/config.yaml || { mkdir -p /state/kestrel && echo %s | base64 -d > /state/kestrel/config.yaml; }
boot_cmd:
  - echo "boot host=$(hostname) eth0=$(ip -4 addr show dev eth0 | grep -c inet)" >> /run/phases.log
run_cmd:
  - echo "run FOO=$FOO eth0=$(ip -4 addr show dev eth0 | grep -c inet)" >> /run/phases.log
kestrel:
  modules:
    - nf_conntrack hashsize=16384
    - bonding
    - 8021q
  sysctl:
    vm.swappiness: "17"
    net.ipv4.tcp_keepalive_time: "1234"
  environment:
    FOO: bar baz
    HTTP_PROXY: http://proxy.example:3128
  timezone: Europe/Paris
  dns_nameservers: [192.0.2.53]
  ntp_servers: ["%s:%d"]
  # The test's servers are plain http on the host: the opt-in, warned.
  allow_insecure_http: true
  config_url: http://%s:%d/extra.yaml
  users:
    - name: ops
      groups: [wheel]
      password: s3cret
      ssh_authorized_keys:
        - %s
  mounts:
    - label: KDATA
      path: /var/mnt/data
      options: [ro]
  network:
    interfaces:
      eth1:
        addresses: [192.168.77.10/24]
        routes:
          - to: 10.99.0.0/16
            via: 192.168.77.1
      vlan100:
        vlan: {link: eth1, id: 100}
        addresses: [10.100.0.2/24]
      bond0:
        bond: {members: [eth2], mode: active-backup}
        addresses: [192.168.88.10/24]
`, e.pubA, hostFromGuest, e.httpPort,
		base64.StdEncoding.EncodeToString([]byte("base64 content\n")),
		base64.StdEncoding.EncodeToString(gz.Bytes()),
		base64.StdEncoding.EncodeToString([]byte(e.stateConfig())),
		hostFromGuest, e.ntpPort, hostFromGuest, e.httpPort, e.pubA)
}

// stateConfig is the state partition's config.yaml that init_cmd writes
// on the first boot (the state partition is mounted in the initramfs
// phase), so that stage 2 reads it and keeps it as the last good version.
func (e *cfgEnv) stateConfig() string {
	return "ssh_authorized_keys: ['" + e.pubB + "']\nkestrel:\n  environment: {FROM_STATE: \"1\"}\n"
}

// TestConfigNoCloud boots with a Kestrel config on a NoCloud disk, checks
// every key group's effect, then puts three bad files on the state
// partition (invalid YAML, a wrong type, an unknown key) and boots again:
// the node comes up, says what is wrong where, still lets the NoCloud keys
// in, and applies nothing from the bad files.
func TestConfigNoCloud(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	e := newCfgEnv(t)
	cidata := buildCIDATA(t, e.dir, filesystem.TypeFat32, map[string]string{
		"user-data": e.kestrelUserData(),
		"meta-data": "instance-id: iid-boottest\nlocal-hostname: from-meta-data\n",
	})
	dir := t.TempDir()
	cfg := e.vmConfig(img, dir, cidata)
	m, ready := bootVM(t, cfg)
	c := console{t, m}
	t.Logf("boot with every key group: stage1 %ss, stage2 %ss, ready at %ss", ready["stage1"], ready["stage2"], ready["ready"])

	// Hostname (user-data over meta-data).
	if got := c.run("hostname"); got != "kestrel-cfg" {
		t.Errorf("hostname %q, want kestrel-cfg", got)
	}
	if got := c.run("cat /etc/hostname"); got != "kestrel-cfg" {
		t.Errorf("/etc/hostname %q", got)
	}
	// sysctl and modules (initramfs phase).
	c.expect("cat /proc/sys/vm/swappiness", "17")
	c.expect("cat /proc/sys/net/ipv4/tcp_keepalive_time", "1234")
	c.expect("cat /sys/module/nf_conntrack/parameters/hashsize", "16384")
	c.expect("test -d /sys/module/bonding && echo loaded", "loaded")
	c.expect("test -d /sys/module/8021q && echo loaded", "loaded")
	// write_files: content, mode, owner.
	c.expect("cat /etc/kestrel-test/plain.conf", "plain text")
	c.expect("stat -c '%a %U %G' /etc/kestrel-test/plain.conf", "640 kestrel kestrel")
	c.expect("cat /var/lib/kestrel-test/b64.txt", "base64 content")
	c.expect("stat -c '%a %U %G' /var/lib/kestrel-test/b64.txt", "600 root root")
	c.expect("cat /var/lib/kestrel-test/gz.txt", "gzip content")
	c.expect("stat -c '%a %U %G' /var/lib/kestrel-test/gz.txt", "604 ops wheel")
	// Environment, including the key config_url added at network-up.
	env := c.run("cat /etc/environment")
	for _, want := range []string{`FOO="bar baz"`, `HTTP_PROXY="http://proxy.example:3128"`, `LATE="from-config-url"`, `FROM_STATE="1"`} {
		if !strings.Contains(env, want) {
			t.Errorf("/etc/environment lacks %s:\n%s", want, env)
		}
	}
	// Static address and route, VLAN, bond (second and third NIC).
	c.contains("ip -4 addr show dev eth1", "192.168.77.10/24")
	c.contains("ip route show 10.99.0.0/16", "via 192.168.77.1 dev eth1")
	c.contains("ip -4 addr show dev vlan100", "10.100.0.2/24")
	c.expect("grep vlan100 /proc/net/vlan/config | tr -d ' '", "vlan100|100|eth1")
	c.contains("ip -4 addr show dev bond0", "192.168.88.10/24")
	c.expect("cat /sys/class/net/bond0/bonding/slaves", "eth2")
	c.contains("ip -4 addr show dev eth0", "10.0.2.15") // DHCP stays on the unlisted NIC
	c.contains("cat /etc/resolv.conf", "nameserver 192.0.2.53")
	// Timezone.
	c.expect("readlink /etc/localtime", "/usr/share/zoneinfo/Europe/Paris")
	c.expect("cat /etc/timezone", "Europe/Paris")
	if z := c.run("date +%Z"); z != "CET" && z != "CEST" {
		t.Errorf("date +%%Z = %q, want CET or CEST", z)
	}
	// Mounts by label.
	c.contains("grep ' /var/mnt/data ' /proc/mounts", "ext4 ro")
	c.expect("cat /var/mnt/data/hello.txt", "data disk")
	// NTP: the clock follows the test's server, 50 days ahead of the host.
	guestNow, _ := strconv.ParseInt(c.run("date +%s"), 10, 64)
	if d := time.Unix(guestNow, 0).Sub(time.Now()); d < ntpOffset-24*time.Hour {
		t.Errorf("guest clock is %v ahead of the host, want about %v (NTP)", d.Round(time.Second), ntpOffset)
	}
	// Phases ran in order, each in its phase.
	log := strings.Split(c.run("cat /run/phases.log"), "\n")
	wantLog := []*regexp.Regexp{
		regexp.MustCompile(`^init pid1=/init\s*$`),
		regexp.MustCompile(`^boot host=kestrel-cfg eth0=0$`),
		regexp.MustCompile(`^run FOO=bar baz eth0=1$`),
	}
	if len(log) != len(wantLog) {
		t.Errorf("phases.log has %d lines, want %d:\n%s", len(log), len(wantLog), strings.Join(log, "\n"))
	} else {
		for i, re := range wantLog {
			if !re.MatchString(log[i]) {
				t.Errorf("phases.log line %d = %q, want %s", i+1, log[i], re)
			}
		}
	}
	// Accounts: kestrel has keys only, ops a SHA-512 crypt hash.
	c.expect("grep ^kestrel: /etc/shadow | cut -d: -f2", "*")
	c.contains("grep ^ops: /etc/shadow | cut -d: -f2", "$6$")
	c.expect("stat -c '%a' /state/ssh/ssh_host_ed25519_key", "600")
	if st := c.run("kestrel status"); configWarning.MatchString(st) {
		t.Errorf("kestrel status reports config problems for a good config:\n%s", st)
	}
	c.contains("kestrel config show", "kestrel-cfg # nocloud:")

	// Over SSH: the literal key, the key fetched from a URL at network-up,
	// the extra user, the environment, SFTP.
	e.waitSSH(t, "kestrel", e.keyA)
	for _, tc := range []struct{ user, key, cmd, want string }{
		{"kestrel", e.keyA, "id -un", "kestrel"},
		{"kestrel", e.keyB, "id -un", "kestrel"},
		{"ops", e.keyA, "id -Gn", "wheel"},
		{"kestrel", e.keyA, `echo "$FOO|$HTTP_PROXY"`, "bar baz|http://proxy.example:3128"},
		{"kestrel", e.keyA, "hostname", "kestrel-cfg"},
	} {
		out, err := e.ssh(tc.user, tc.key, tc.cmd)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("ssh %s %q: %q, %v; want %q", tc.user, tc.cmd, out, err, tc.want)
		}
	}
	// Password login: only for the account that has a password.
	if out, err := e.sshPassword("ops", "s3cret", "id -un"); err != nil || strings.TrimSpace(out) != "ops" {
		t.Errorf("ssh ops with its password: %q, %v", out, err)
	}
	if out, err := e.sshPassword("kestrel", "s3cret", "id -un"); err == nil {
		t.Errorf("ssh kestrel (keys only) let a password in: %q", out)
	}
	local := filepath.Join(e.dir, "upload.txt")
	os.WriteFile(local, []byte("sftp works\n"), 0o644)
	scp := exec.Command("scp", append(e.sshOpts(e.keyA), "-P", strconv.Itoa(e.sshPort), local, "kestrel@127.0.0.1:upload.txt")...)
	if out, err := scp.CombinedOutput(); err != nil {
		t.Errorf("scp: %v\n%s", err, out)
	} else {
		c.expect("cat /home/kestrel/upload.txt", "sftp works")
	}

	// Bad config on the state partition: config.yaml (good until now, so
	// it has a last good copy) becomes invalid YAML, and two new drop-ins
	// have a wrong type and an unknown key. The second boot has no NoCloud
	// disk: the node comes up, says what is wrong where, lets in the key
	// of the last good config.yaml (not the NoCloud one), takes nothing
	// from the invalid files, and applies the rest of the one with only
	// an unknown key (its swappiness).
	c.run("mkdir -p /state/kestrel/config.d")
	writeGuest(c, "/state/kestrel/config.yaml", "hostname: bad-yaml\nkestrel: [\n")
	writeGuest(c, "/state/kestrel/config.d/50-type.yaml", "hostname: bad-type\nssh_authorized_keys: []\nkestrel:\n  sysctl: [vm.swappiness]\n")
	writeGuest(c, "/state/kestrel/config.d/60-unknown.yaml", "kestrel:\n  sysctl:\n    vm.swappiness: \"99\"\nhostnme: bad-unknown\n")
	c.run("sync")
	m.Send("kestrel poweroff\n")
	if code, err := m.Wait(2 * time.Minute); err != nil || code != 0 {
		t.Fatalf("poweroff: qemu exit %d, %v\n%s", code, err, tail(m.Console(), 30))
	}

	cfg.ExtraDrives = []string{e.dataDisk}
	m2, _ := bootVM(t, cfg)
	c2 := console{t, m2}
	boot2 := m2.Console()
	st := c2.run("kestrel status")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`/state/kestrel/config\.yaml:\d+:\d+: invalid YAML[^\n]*`),
		regexp.MustCompile(`/state/kestrel/config\.yaml is invalid: its last good version is used instead`),
		regexp.MustCompile(`/state/kestrel/config\.d/50-type\.yaml:4:\d+: kestrel\.sysctl: [^\n]*`),
		regexp.MustCompile(`/state/kestrel/config\.d/60-unknown\.yaml:4:1: hostnme: [^\n]*hostname`),
	} {
		if !want.MatchString(boot2) {
			t.Errorf("console does not show %s:\n%s", want, tail(boot2, 60))
		}
		if !want.MatchString(st) {
			t.Errorf("kestrel status does not show %s:\n%s", want, st)
		}
	}
	if h := c2.run("hostname"); strings.HasPrefix(h, "bad-") {
		t.Errorf("hostname %q comes from a bad file", h)
	}
	c2.expect("cat /proc/sys/vm/swappiness", "99")
	c2.contains("cat /etc/environment", `FROM_STATE="1"`)
	// sshd may still be starting (it runs at the lowest CPU weight until
	// the ready line): every other SSH check waits for it the same way.
	e.waitSSH(t, "kestrel", e.keyB)
	if out, err := e.ssh("kestrel", e.keyB, "id -un"); err != nil || strings.TrimSpace(out) != "kestrel" {
		t.Errorf("ssh with the key of the last good config.yaml: %q, %v", out, err)
	}
	if out, err := e.ssh("kestrel", e.keyA, "id -un"); err == nil {
		t.Errorf("ssh with the NoCloud key after the disk is gone: %q", out)
	}
}

// TestConfigK3OS boots with a k3OS config, unchanged, on an iso9660
// NoCloud disk.
func TestConfigK3OS(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	e := newCfgEnv(t)
	userData := fmt.Sprintf(`#cloud-config
ssh_authorized_keys:
- %s
hostname: k3os-style
write_files:
- encoding: b64
  content: %s
  owner: root
  path: /var/lib/k3os-test/hello.sh
  permissions: '0755'
init_cmd:
- "echo init >> /run/phases.log"
boot_cmd:
- "echo boot >> /run/phases.log"
run_cmd:
- "echo run $K3OS_VAR >> /run/phases.log"
k3os:
  data_sources:
  - cdrom
  modules:
  - 8021q
  sysctls:
    vm.swappiness: "23"
  dns_nameservers:
  - 192.0.2.54
  password: rancher
  environment:
    K3OS_VAR: hello
  labels:
    region: us-west-1
`, e.pubA, base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho k3os\n")))
	cidata := buildCIDATA(t, e.dir, filesystem.TypeISO9660, map[string]string{"user-data": userData, "meta-data": "instance-id: iid-k3os\n"})
	m, _ := bootVM(t, e.vmConfig(img, t.TempDir(), cidata))
	c := console{t, m}
	c.expect("hostname", "k3os-style")
	c.expect("cat /proc/sys/vm/swappiness", "23")
	c.expect("test -d /sys/module/8021q && echo loaded", "loaded")
	c.expect("/var/lib/k3os-test/hello.sh", "k3os")
	c.expect("stat -c '%a %U' /var/lib/k3os-test/hello.sh", "755 root")
	c.contains("cat /etc/resolv.conf", "nameserver 192.0.2.54")
	c.contains("cat /etc/environment", `K3OS_VAR="hello"`)
	c.contains("grep ^kestrel: /etc/shadow | cut -d: -f2", "$6$")
	c.expect("cat /run/phases.log", "init\nboot\nrun hello")
	if st := c.run("kestrel status"); configWarning.MatchString(st) {
		t.Errorf("kestrel status reports config problems for a k3OS config:\n%s", st)
	}
	c.contains("kestrel config show --values", "kestrel.sysctl.vm.swappiness")
	e.waitSSH(t, "kestrel", e.keyA)
	if out, err := e.ssh("kestrel", e.keyA, "id -un; hostname"); err != nil || out != "kestrel\nk3os-style\n" {
		t.Errorf("ssh: %q, %v", out, err)
	}
}

// unknownKeyConfig is a k3OS config as users write them: k3OS spellings
// (a singular key, a scalar for a list) and one misspelt key, which k3OS
// ignored silently. %s is the operator's public key.
const unknownKeyConfig = `# k3OS config with a key Kestrel does not know
ssh_authorized_key: %s
hostname: k3os-unknown
k3os:
  server_url: https://10.0.2.2:6443
  token: K10unknown::server:secret
  k3s_args:
  - agent
  ntp_sever: pool.ntp.org
  label:
    region: eu-west
`

// TestConfigUnknownKeyFirstBoot: on a first boot (no last good copy), a
// k3OS config with one unknown key still lets the operator in by SSH key
// and starts k3s (the stand-in) with its token; the console and `kestrel
// status` name the key with file:line:col.
func TestConfigUnknownKeyFirstBoot(t *testing.T) {
	t.Parallel()
	e := newCfgEnv(t)
	img := buildImageWith(t, imageOpts{Name: "test-standin", K3s: "standin"})
	cfgYAML := fmt.Sprintf(unknownKeyConfig, e.pubA)
	dir := t.TempDir()
	disk := withESPConfig(t, img, dir, cfgYAML)
	m, _ := bootVM(t, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir, Memory: 1024,
		HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:22", e.sshPort)}})
	g := guest{console{t, m}}
	h := g.waitHealth(healthWait)
	checkStarted(t, g, h, cfgYAML, []string{"agent"},
		[]string{"server: https://10.0.2.2:6443", "token: K10unknown::server:secret", "  - region=eu-west"}, nil)
	e.waitSSH(t, "kestrel", e.keyA)
	if out, err := e.ssh("kestrel", e.keyA, "id -un; hostname"); err != nil || out != "kestrel\nk3os-unknown\n" {
		t.Errorf("ssh with the key of a config with an unknown key: %q, %v", out, err)
	}
	want := regexp.MustCompile(regexp.QuoteMeta(filepath.Join(layout.ESPMount, layout.ESPUserConfig)) +
		`:9:3: k3os\.ntp_sever: unknown key "ntp_sever", did you mean "ntp_servers"\? \(left out; the rest of its source applies\)`)
	if st := g.run("kestrel status"); !want.MatchString(st) {
		t.Errorf("kestrel status does not name the unknown key (%s):\n%s", want, st)
	}
	if !want.MatchString(m.Console()) {
		t.Errorf("console does not name the unknown key:\n%s", tail(m.Console(), 60))
	}
}

// TestConfigSyntaxErrorFirstBoot: on a first boot a config with invalid
// YAML (a TAB indent, as editors without "expand tabs" write) is skipped
// whole, since there is no last good copy to fall back to: the node still
// comes up with its console, and the console and `kestrel status` say
// where the file is broken.
func TestConfigSyntaxErrorFirstBoot(t *testing.T) {
	t.Parallel()
	img := buildImageWith(t, imageOpts{Name: "test-standin", K3s: "standin"})
	dir := t.TempDir()
	disk := withESPConfig(t, img, dir, "hostname: tabbed\nk3os:\n\tntp_servers:\n\t- pool.ntp.org\n")
	m, _ := bootVM(t, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir})
	c := console{t, m}
	want := regexp.MustCompile(regexp.QuoteMeta(filepath.Join(layout.ESPMount, layout.ESPUserConfig)) +
		`:3:1: invalid YAML: found character '\\t' that cannot start any token \(source skipped\)`)
	if st := c.run("kestrel status"); !want.MatchString(st) {
		t.Errorf("kestrel status does not show %s:\n%s", want, st)
	}
	if !want.MatchString(m.Console()) {
		t.Errorf("console does not show %s:\n%s", want, tail(m.Console(), 60))
	}
	if h := c.run("hostname"); h == "tabbed" {
		t.Errorf("hostname %q comes from the invalid file", h)
	}
}

// configWarning is how `kestrel status` shows a config problem.
var configWarning = regexp.MustCompile(`warning:\s+config:`)

// console runs commands on the VM's console shell for one test.
type console struct {
	t testing.TB
	m *vm.VM
}

func (c console) run(cmd string) string {
	c.t.Helper()
	out, err := c.m.MustRun(cmd, cmdTimeout)
	if err != nil {
		c.t.Errorf("%v", err)
	}
	return strings.TrimSpace(pid1Lines.ReplaceAllString(out, ""))
}

// pid1Lines are PID 1's own console messages ("kestrel: service console:
// started, pid 127", "kestrel: drivers after ready: ..."): PID 1 writes
// them to the console the shell answers on, so on a busy host one can
// land in the middle of a command's output (TestHangingBootCmd failed
// on one in CI). Commands the tests run print no such line.
var pid1Lines = regexp.MustCompile(`(?m)^kestrel: .*\r?\n?`)

func (c console) expect(cmd, want string) {
	c.t.Helper()
	if got := c.run(cmd); got != want {
		c.t.Errorf("%s: got %q, want %q", cmd, got, want)
	}
}

func (c console) contains(cmd, want string) {
	c.t.Helper()
	if got := c.run(cmd); !strings.Contains(got, want) {
		c.t.Errorf("%s: got %q, want it to contain %q", cmd, got, want)
	}
}

// writeGuest writes content to path on the guest through the console.
func writeGuest(c console, path, content string) {
	c.t.Helper()
	c.run(fmt.Sprintf("echo %s | base64 -d > %s", base64.StdEncoding.EncodeToString([]byte(content)), path))
}

// buildCIDATA makes a NoCloud disk as users do: a vfat filesystem
// labelled CIDATA made by mkfs.vfat and filled by mcopy (cloud-localds -f
// vfat), or an iso9660 one with Rock Ridge names (cloud-localds' default;
// written here with go-diskfs, as genisoimage is not a test dependency).
func buildCIDATA(t *testing.T, dir string, fsType filesystem.Type, files map[string]string) string {
	t.Helper()
	img := filepath.Join(dir, "cidata.img")
	if fsType == filesystem.TypeISO9660 {
		d, err := diskfs.Create(img, 4<<20, diskfs.SectorSizeDefault)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d.LogicalBlocksize = 2048
		fsys, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: fsType, VolumeLabel: "cidata", WorkDir: t.TempDir()})
		if err != nil {
			t.Fatalf("CIDATA iso9660: %v", err)
		}
		for name, content := range files {
			f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
			if err != nil {
				t.Fatalf("CIDATA %s: %v", name, err)
			}
			if _, err := f.Write([]byte(content)); err != nil {
				t.Fatalf("CIDATA %s: %v", name, err)
			}
			f.Close()
		}
		if err := fsys.(*iso9660.FileSystem).Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: "cidata"}); err != nil {
			t.Fatalf("CIDATA iso9660: %v", err)
		}
		return img
	}
	for _, tool := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (dosfstools, mtools)", tool)
		}
	}
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.vfat", "-n", "CIDATA", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.vfat: %v: %s", err, out)
	}
	for name, content := range files {
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mcopy", "-i", img, src, "::"+name).CombinedOutput(); err != nil {
			t.Fatalf("mcopy %s: %v: %s", name, err, out)
		}
	}
	return img
}

// sshKeygen makes an ed25519 key pair and returns the private key's path
// and the public key line.
func sshKeygen(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@boottest", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(pub))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ntpServer answers SNTP requests on a loopback UDP port with the host's
// time plus offset, and returns the port.
func ntpServer(t *testing.T, offset time.Duration) int {
	t.Helper()
	return ntptest.Serve(t, func() time.Time { return time.Now().Add(offset) }, nil).Port
}
