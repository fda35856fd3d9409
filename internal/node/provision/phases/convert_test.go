package phases

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/access/users"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
)

const keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFjZ1P1iZUXxv4YHqKHm3mLzj4yqzRrQhfIYKHY3cTcF a@test"

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	d, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Config()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUsers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		doc      string
		resolved map[string][]string
		want     []users.User
	}{
		{"default user only, no keys", "{}", nil, []users.User{{Name: "kestrel"}}},
		{"literal keys, remote ones left for network-up", "ssh_authorized_keys: ['" + keyA + "', 'github:someone']\nkestrel: {password: '$6$x$y'}\n", nil,
			[]users.User{{Name: "kestrel", Password: "$6$x$y", AuthorizedKeys: []string{keyA}}}},
		{"resolved remote keys follow the literal ones", "ssh_authorized_keys: ['" + keyA + "', 'github:someone']\n",
			map[string][]string{"kestrel": {"ssh-ed25519 BBBB b@gh"}},
			[]users.User{{Name: "kestrel", AuthorizedKeys: []string{keyA, "ssh-ed25519 BBBB b@gh"}}}},
		{"extra users", "kestrel:\n  users:\n  - {name: ops, groups: [wheel], password: pw, shell: /bin/ash, ssh_authorized_keys: ['" + keyA + "', 'https://x/keys']}\n", nil,
			[]users.User{{Name: "kestrel"}, {Name: "ops", Groups: []string{"wheel"}, Password: "pw", Shell: "/bin/ash", AuthorizedKeys: []string{keyA}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Users(parse(t, tc.doc), tc.resolved)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRemoteKeysAndPasswordAuth(t *testing.T) {
	c := parse(t, "ssh_authorized_keys: ['"+keyA+"', 'gitlab:me']\nkestrel:\n  users:\n  - {name: ops, ssh_authorized_keys: ['"+keyA+"']}\n  - {name: dev, password: x, ssh_authorized_keys: ['http://h/k']}\n")
	want := map[string][]string{"kestrel": {keyA, "gitlab:me"}, "dev": {"http://h/k"}}
	if got := RemoteKeys(c); !reflect.DeepEqual(got, want) {
		t.Errorf("RemoteKeys = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		doc  string
		want bool
	}{
		{"{}", false},
		{"kestrel: {password: x}", true},
		{"kestrel: {users: [{name: a}]}", false},
		{"kestrel: {users: [{name: a, password: '$6$a$b'}]}", true},
	} {
		if got := PasswordAuth(parse(t, tc.doc)); got != tc.want {
			t.Errorf("PasswordAuth(%s) = %v", tc.doc, got)
		}
	}
	if PasswordAuth(nil) {
		t.Error("PasswordAuth(nil) = true")
	}
}

func TestNetConfig(t *testing.T) {
	c := parse(t, `kestrel:
  dns_nameservers: [192.0.2.1]
  network:
    interfaces:
      eth0: {dhcp: true, dns: [192.0.2.2, 192.0.2.1]}
      eth1:
        addresses: [192.168.1.10/24]
        gateway: 192.168.1.1
        mtu: 9000
        routes: [{to: 10.0.0.0/8, via: 192.168.1.254, metric: 5}]
      vlan100: {vlan: {link: eth1, id: 100}, dhcp: false}
      bond0: {bond: {members: [eth2, eth3], mode: 802.3ad}, addresses: [10.1.0.1/16]}
`)
	got := NetConfig(c.Kestrel.Network)
	on := netconf.DHCPOn
	want := netconf.Config{
		Interfaces: []netconf.Interface{
			{Name: "bond0", Addresses: []string{"10.1.0.1/16"}},
			{Name: "eth0", DHCP: on},
			{Name: "eth1", Addresses: []string{"192.168.1.10/24"}, Gateway: "192.168.1.1", MTU: 9000,
				Routes: []netconf.Route{{To: "10.0.0.0/8", Via: "192.168.1.254", Metric: 5}}},
			{Name: "vlan100", DHCP: netconf.DHCPOff},
		},
		Bonds: []netconf.Bond{{Name: "bond0", Mode: "802.3ad", Members: []string{"eth2", "eth3"}}},
		VLANs: []netconf.VLAN{{Name: "vlan100", Link: "eth1", ID: 100}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NetConfig:\n got  %+v\n want %+v", got, want)
	}
	if err := netconf.Validate(got); err != nil {
		t.Errorf("netconf rejects the conversion: %v", err)
	}
	if got := Nameservers(c); !reflect.DeepEqual(got, []string{"192.0.2.1", "192.0.2.2"}) {
		t.Errorf("Nameservers = %v", got)
	}
	if got := netconf.Modules(got); !reflect.DeepEqual(got, []string{"bonding", "8021q"}) {
		t.Errorf("netconf.Modules = %v", got)
	}
}

func TestEnvironment(t *testing.T) {
	env := map[string]string{
		"http_proxy": "http://proxy:3128",
		"QUOTED":     `a "b" $HOME \ and ` + "`x`",
		"SPACES":     "a b  c",
		"EMPTY":      "",
	}
	data, err := EnvironmentFile(env)
	if err != nil {
		t.Fatal(err)
	}
	got := ParseEnvironment(data)
	want := []string{"EMPTY=", `QUOTED=a "b" $HOME \ and ` + "`x`", "SPACES=a b  c", "http_proxy=http://proxy:3128"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got  %q\n want %q", got, want)
	}
	// A POSIX shell reads the same values.
	if sh, err := exec.LookPath("sh"); err == nil {
		f := filepath.Join(t.TempDir(), "environment")
		os.WriteFile(f, data, 0o644)
		out, err := exec.Command(sh, "-c", `set -a; . "$1"; printf '%s|%s' "$QUOTED" "$SPACES"`, "sh", f).Output()
		if err != nil || string(out) != env["QUOTED"]+"|"+env["SPACES"] {
			t.Errorf("sh reads %q, %v", out, err)
		}
	}
	if _, err := EnvironmentFile(map[string]string{"BAD-NAME": "x", "OK": "y", "NL": "a\nb"}); err == nil ||
		!strings.Contains(err.Error(), "BAD-NAME") || !strings.Contains(err.Error(), "NL") {
		t.Errorf("bad names: %v", err)
	}
	c := parse(t, "kestrel: {environment: {PATH: /opt/bin, FOO: bar, 'bad name': x}}")
	if got := Environ(c); !reflect.DeepEqual(got, []string{"FOO=bar", "HOME=/root", "PATH=/opt/bin"}) {
		t.Errorf("Environ = %q", got)
	}
	if got := Environ(nil); !reflect.DeepEqual(got, []string{"HOME=/root", "PATH=" + BasePath}) {
		t.Errorf("Environ(nil) = %q", got)
	}
}

func TestMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		flags uintptr
		data  string
	}{
		{nil, 0, ""},
		{[]string{"ro", "noatime"}, syscall.MS_RDONLY | syscall.MS_NOATIME, ""},
		{[]string{"defaults,nosuid", "discard", "commit=60"}, syscall.MS_NOSUID, "discard,commit=60"},
	} {
		flags, data := MountOptions(tc.opts)
		if flags != tc.flags || data != tc.data {
			t.Errorf("MountOptions(%q) = %#x %q, want %#x %q", tc.opts, flags, data, tc.flags, tc.data)
		}
	}
}

func TestReadFSID(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mkfs  []string
		label string
	}{
		{[]string{"mkfs.ext4", "-q", "-F", "-L", "DATA1", "-U", "0b6ef3b5-2d1c-4a56-9f7e-3c1d2b4a5f60"}, "DATA1"},
		{[]string{"mkfs.vfat", "-n", "DATA2", "-i", "1234ABCD"}, "DATA2"},
		{[]string{"mkfs.vfat", "-F", "32", "-n", "DATA3", "-i", "0000BEEF"}, "DATA3"},
	} {
		if _, err := exec.LookPath(tc.mkfs[0]); err != nil {
			t.Logf("%s not installed", tc.mkfs[0])
			continue
		}
		img := filepath.Join(dir, tc.label+".img")
		os.WriteFile(img, make([]byte, 40<<20), 0o644)
		if out, err := exec.Command(tc.mkfs[0], append(tc.mkfs[1:], img)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", tc.mkfs, err, out)
		}
		label, uuid, err := ReadFSID(img)
		if err != nil || label != tc.label {
			t.Errorf("%s: label %q uuid %q, %v", tc.label, label, uuid, err)
		}
		want := map[string]string{"DATA1": "0b6ef3b5-2d1c-4a56-9f7e-3c1d2b4a5f60", "DATA2": "1234-ABCD", "DATA3": "0000-BEEF"}[tc.label]
		if uuid != want {
			t.Errorf("%s: uuid %q, want %q", tc.label, uuid, want)
		}
		if got, err := FindFilesystem([]string{filepath.Join(dir, "missing"), img}, "", want); err != nil || got != img {
			t.Errorf("FindFilesystem by uuid %s: %q, %v", want, got, err)
		}
	}
	if _, err := FindFilesystem(nil, "NOPE", ""); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("FindFilesystem of a missing label: %v", err)
	}
}

// TestEveryKeyHasAnApplier keeps Appliers in step with config.Keys.
func TestEveryKeyHasAnApplier(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range config.Keys {
		if k.Phase == config.PhaseNone {
			continue
		}
		seen[k.Path] = true
		if Appliers[k.Path] == "" {
			t.Errorf("%s (%s phase): no applier named in Appliers", k.Path, k.Phase)
		}
	}
	for k := range Appliers {
		if !seen[k] {
			t.Errorf("Appliers names %s, which is not a key with a phase", k)
		}
	}
}
