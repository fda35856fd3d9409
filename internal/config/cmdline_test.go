package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/verity"
)

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Config
	}{
		{`console=ttyS0 kestrel.hostname="a-b" quiet`, Config{Hostname: "a-b"}},
		{`k3os.hostname=h`, Config{Hostname: "h"}},
		{`kestrel.ssh_authorized_keys="ssh-ed25519 AAAA x" kestrel.ssh_authorized_keys=github:alice`, Config{SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA x", "github:alice"}}},
		{`kestrel.modules=kvm kestrel.modules="nvme poll_queues=1"`, Config{Kestrel: Section{Modules: []string{"kvm", "nvme poll_queues=1"}}}},
		{`kestrel.sysctl.net.ipv4.ip_forward=1 k3os.sysctls.vm.swappiness=10`, Config{Kestrel: Section{Sysctl: map[string]string{"net.ipv4.ip_forward": "1", "vm.swappiness": "10"}}}},
		{`k3os.password=rancher k3os.token=T k3os.server_url=https://s:6443`, Config{Kestrel: Section{Password: "rancher", Token: "T", ServerURL: "https://s:6443"}}},
		{`kestrel.console_shell kestrel.k3s.upgrade_controller=false`, Config{Kestrel: Section{ConsoleShell: bp(true), K3s: K3s{UpgradeController: bp(false)}}}},
		{`kestrel.k3s.role=agent kestrel.k3s.labels.topology.kubernetes.io/zone=z1`, Config{Kestrel: Section{K3s: K3s{Role: "agent", Labels: map[string]string{"topology.kubernetes.io/zone": "z1"}}}}},
		{`kestrel.network.interfaces.eth0.10.vlan.link=eth0 kestrel.network.interfaces.eth0.10.vlan.id=10 kestrel.network.interfaces.eth0.10.addresses=10.0.0.2/24`,
			Config{Kestrel: Section{Network: Network{Interfaces: map[string]Interface{"eth0.10": {VLAN: &VLAN{Link: "eth0", ID: 10}, Addresses: []string{"10.0.0.2/24"}}}}}}},
		{`kestrel.network.interfaces.eth0.dhcp=false kestrel.network.interfaces.eth0.mtu=1400`, Config{Kestrel: Section{Network: Network{Interfaces: map[string]Interface{"eth0": {DHCP: bp(false), MTU: 1400}}}}}},
		{`kestrel.install.device=/dev/vda kestrel.install.silent k3os.install.power_off=true`, Config{Kestrel: Section{Install: Install{Device: "/dev/vda", Silent: true, PowerOff: true}}}},
		{`kestrel.timezone=Europe/Paris kestrel.timezone=UTC`, Config{Kestrel: Section{Timezone: "UTC"}}},
		{`kestrel.run_cmd="echo a" kestrel.run_cmd="echo b"`, Config{RunCmd: []string{"echo a", "echo b"}}},
		{`kestrel.hostname=007`, Config{Hostname: "007"}},
		{`kestrel.slot=a kestrel.debug`, Config{}},
	} {
		d, err := ParseCmdline("cmdline", tc.line)
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		got, _ := d.Config()
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s\n got  %+v\n want %+v", tc.line, *got, tc.want)
		}
	}
}

// TestCmdlineConfigKeys checks which parameters are config, their
// columns, and that a bare key is true.
func TestCmdlineConfigKeys(t *testing.T) {
	line := `console=ttyS0 kestrel.slot=a kestrel.debug k3os.mode=live k3os.rescue kestrel. other.hostname=x kestrel.hostname=h kestrel.console_shell`
	// The live ISO's entries (internal/build/isoimage).
	line += " kestrel.live kestrel.mode=install kestrel.rescue kestrel.rescue_timeout=0"
	// The builder's boot entries carry stage 1's verity parameters.
	v := verity.Params{RootHash: strings.Repeat("ab", 32), DataBlocks: 10, HashOffset: 40960}
	line += " " + strings.Join(v.CmdlineOptions(), " ")
	d, err := ParseCmdline("cmdline", line)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := d.Config()
	want := Config{Hostname: "h", Kestrel: Section{ConsoleShell: bp(true)}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
	// The installer's keys are config, k3OS's spelling too.
	d, err = ParseCmdline("cmdline", "kestrel.install.device=/dev/sda k3os.install.power_off=true k3os.install.config_url=https://x/c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = d.Config()
	if in := got.Kestrel.Install; in.Device != "/dev/sda" || !in.PowerOff || in.ConfigURL != "https://x/c.yaml" {
		t.Errorf("install keys: %+v", in)
	}
	// Columns count from the parameter's first byte, quote included.
	_, err = ParseCmdline("cmdline", `quiet "kestrel.hostnme=a b"`)
	if err == nil || !strings.Contains(err.Error(), "cmdline:1:7: kestrel.hostnme") {
		t.Errorf("error %v, want one at column 7", err)
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`quiet kestrel.hostnme=x`, `cmdline:1:7: kestrel.hostnme: unknown key "hostnme", did you mean "hostname"?`},
		{`kestrel.console_shell=maybe`, `cmdline:1:1: kestrel.console_shell: expected true or false, got "maybe"`},
		{`kestrel.write_files=/x`, `a list of mappings cannot be set on the kernel command line`},
		{`kestrel.users.name=x`, `a list of mappings cannot be set`},
		{`kestrel.sysctl=1`, `a map key is needed`},
		{`kestrel.hostname.x=1`, `has no sub-keys`},
		{`kestrel.network.interfaces.eth0.mtux=1`, `no key of a mapping matches "eth0.mtux"`},
		{`kestrel.k3s.role=master`, `"master" is not one of server, agent`},
	} {
		_, err := ParseCmdline("cmdline", tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got  %v\n want %s", tc.line, err, tc.want)
		}
	}
}

func FuzzCmdline(f *testing.F) {
	for _, s := range []string{
		`console=ttyS0 kestrel.hostname="a b"`, `k3os.sysctl.vm.swappiness=10 k3os.modules=kvm k3os.modules=nvme`,
		`kestrel.network.interfaces.eth0.10.vlan.id=10`, `kestrel.k3s.labels.a.b/c=d`, `kestrel.x.y.z`, `"kestrel.run_cmd=echo hi"`, `kestrel.==`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseCmdline("cmdline", s)
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if _, err := d.Config(); err != nil {
			t.Fatalf("valid document does not decode: %v", err)
		}
		if _, err := Merge(d, d); err != nil {
			t.Fatal(err)
		}
	})
}
