package config

import (
	"reflect"
	"strings"
	"testing"
)

func bp(b bool) *bool { return &b }

func parseOne(t *testing.T, src string) *Config {
	t.Helper()
	d, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", src, err)
	}
	c, err := d.Config()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEveryKey decodes each key of the schema from YAML.
func TestEveryKey(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want Config
	}{
		{"ssh_authorized_keys: [ssh-ed25519 AAAA a@b, github:alice]", Config{SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA a@b", "github:alice"}}},
		{"write_files:\n- path: /etc/a\n  content: aGk=\n  encoding: b64\n  owner: root:root\n  permissions: '0600'",
			Config{WriteFiles: []File{{Path: "/etc/a", Content: "aGk=", Encoding: "b64", Owner: "root:root", Permissions: "0600"}}}},
		{"hostname: edge-1", Config{Hostname: "edge-1"}},
		{"init_cmd: [a]\nboot_cmd: [b]\nrun_cmd: [c, d]", Config{InitCmd: []string{"a"}, BootCmd: []string{"b"}, RunCmd: []string{"c", "d"}}},
		{"kestrel: {data_sources: [aws, openstack, cdrom]}", Config{Kestrel: Section{DataSources: []string{"aws", "openstack", "cdrom"}}}},
		{"kestrel: {modules: [kvm, 'nvme poll_queues=1']}", Config{Kestrel: Section{Modules: []string{"kvm", "nvme poll_queues=1"}}}},
		{"kestrel: {sysctl: {vm.swappiness: 10, net.ipv4.ip_forward: '1'}}", Config{Kestrel: Section{Sysctl: map[string]string{"vm.swappiness": "10", "net.ipv4.ip_forward": "1"}}}},
		{"kestrel: {sysctls: {kernel.panic: 10}}", Config{Kestrel: Section{Sysctl: map[string]string{"kernel.panic": "10"}}}},
		{"kestrel: {ntp_servers: [0.pool.ntp.org]}", Config{Kestrel: Section{NTPServers: []string{"0.pool.ntp.org"}}}},
		{"kestrel: {dns_nameservers: [1.1.1.1, '2606:4700::1111']}", Config{Kestrel: Section{DNSNameservers: []string{"1.1.1.1", "2606:4700::1111"}}}},
		{"kestrel: {wifi: [{name: home, passphrase: secret}]}", Config{Kestrel: Section{Wifi: []Wifi{{"home", "secret"}}}}},
		{"kestrel: {password: rancher}", Config{Kestrel: Section{Password: "rancher"}}},
		{"kestrel: {server_url: 'https://10.0.0.1:6443', token: K10abc}", Config{Kestrel: Section{ServerURL: "https://10.0.0.1:6443", Token: "K10abc"}}},
		{"kestrel: {labels: {region: eu}, taints: ['dedicated=edge:NoSchedule', 'gpu:NoExecute']}", Config{Kestrel: Section{Labels: map[string]string{"region": "eu"}, Taints: []string{"dedicated=edge:NoSchedule", "gpu:NoExecute"}}}},
		{"kestrel: {k3s_args: [server, --disable-agent]}", Config{Kestrel: Section{K3sArgs: []string{"server", "--disable-agent"}}}},
		{"kestrel: {environment: {http_proxy: 'http://p:3128'}}", Config{Kestrel: Section{Environment: map[string]string{"http_proxy": "http://p:3128"}}}},
		{"kestrel:\n  install: {device: /dev/sda, silent: true, force_efi: true, config_url: 'https://c/x.yaml', iso_url: 'https://c/k.iso', no_format: true, power_off: true, tty: ttyS0, debug: true}",
			Config{Kestrel: Section{Install: Install{Device: "/dev/sda", Silent: true, ForceEFI: true, ConfigURL: "https://c/x.yaml", ISOURL: "https://c/k.iso", NoFormat: true, PowerOff: true, TTY: "ttyS0", Debug: true}}}},
		{"kestrel: {config_url: 'file:///run/x.yaml'}", Config{Kestrel: Section{ConfigURL: "file:///run/x.yaml"}}},
		{`kestrel:
  network:
    interfaces:
      eth0: {dhcp: false, addresses: [192.0.2.10/24], gateway: 192.0.2.1, dns: [192.0.2.53], mtu: 9000,
             routes: [{to: 10.0.0.0/8, via: 192.0.2.254, metric: 100}]}
      eth0.10: {vlan: {link: eth0, id: 10}, dhcp: true}
      bond0: {bond: {members: [eth1, eth2], mode: 802.3ad}}`,
			Config{Kestrel: Section{Network: Network{Interfaces: map[string]Interface{
				"eth0":    {DHCP: bp(false), Addresses: []string{"192.0.2.10/24"}, Gateway: "192.0.2.1", DNS: []string{"192.0.2.53"}, MTU: 9000, Routes: []Route{{To: "10.0.0.0/8", Via: "192.0.2.254", Metric: 100}}},
				"eth0.10": {VLAN: &VLAN{Link: "eth0", ID: 10}, DHCP: bp(true)},
				"bond0":   {Bond: &Bond{Members: []string{"eth1", "eth2"}, Mode: "802.3ad"}},
			}}}}},
		{`kestrel:
  registries:
    mirrors:
      docker.io: {endpoint: ['https://mirror:5000'], rewrite: {'^rancher/(.*)': 'mirror/$1'}}
    configs:
      mirror:5000:
        auth: {username: u, password: p, auth: dTpw, identity_token: t}
        tls: {cert_file: /c, key_file: /k, ca_file: /ca, insecure_skip_verify: true}`,
			Config{Kestrel: Section{Registries: Registries{
				Mirrors: map[string]Mirror{"docker.io": {Endpoint: []string{"https://mirror:5000"}, Rewrite: map[string]string{"^rancher/(.*)": "mirror/$1"}}},
				Configs: map[string]RegistryConfig{"mirror:5000": {Auth: &RegistryAuth{Username: "u", Password: "p", Auth: "dTpw", IdentityToken: "t"}, TLS: &RegistryTLS{CertFile: "/c", KeyFile: "/k", CAFile: "/ca", InsecureSkipVerify: true}}},
			}}}},
		{"kestrel: {timezone: Europe/Paris}", Config{Kestrel: Section{Timezone: "Europe/Paris"}}},
		{"kestrel:\n  users:\n  - {name: ops, ssh_authorized_keys: [k1], groups: [wheel], password: '$6$x$y', shell: /bin/ash}",
			Config{Kestrel: Section{Users: []User{{Name: "ops", SSHAuthorizedKeys: []string{"k1"}, Groups: []string{"wheel"}, Password: "$6$x$y", Shell: "/bin/ash"}}}}},
		{"kestrel:\n  mounts:\n  - {label: DATA, path: /var/data, fstype: ext4, options: [noatime]}\n  - {device: /dev/vdb1, path: /mnt/b}\n  - {uuid: 1234-ABCD, path: /mnt/c}",
			Config{Kestrel: Section{Mounts: []Mount{{Label: "DATA", Path: "/var/data", FSType: "ext4", Options: []string{"noatime"}}, {Device: "/dev/vdb1", Path: "/mnt/b"}, {UUID: "1234-ABCD", Path: "/mnt/c"}}}}},
		{"kestrel:\n  k3s: {role: agent, server_url: 'https://s:6443', token: t, token_file: /run/tok, datastore_endpoint: 'postgres://x', node_name: n1, labels: {a: b}, taints: ['x:NoSchedule'], args: [--debug], upgrade_controller: false}",
			Config{Kestrel: Section{K3s: K3s{Role: "agent", ServerURL: "https://s:6443", Token: "t", TokenFile: "/run/tok", DatastoreEndpoint: "postgres://x", NodeName: "n1", Labels: map[string]string{"a": "b"}, Taints: []string{"x:NoSchedule"}, Args: []string{"--debug"}, UpgradeController: bp(false)}}}},
		{"kestrel: {console_shell: true}", Config{Kestrel: Section{ConsoleShell: bp(true)}}},
		{"k3os: {password: x, sysctls: {a: b}}", Config{Kestrel: Section{Password: "x", Sysctl: map[string]string{"a": "b"}}}},
		{"k3os: {password: x, token: t}\nkestrel: {password: y}", Config{Kestrel: Section{Password: "y", Token: "t"}}},
		{"kestrel: {sysctls: {a: '1', b: '2'}, sysctl: {b: '3'}}", Config{Kestrel: Section{Sysctl: map[string]string{"a": "1", "b": "3"}}}},
		{"#cloud-config\nhostname: h\n", Config{Hostname: "h"}},
		{"hostname: ~\nkestrel:\n", Config{}},
		{"", Config{}},
	} {
		got := parseOne(t, tc.yaml)
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s\ngot  %+v\nwant %+v", tc.yaml, *got, tc.want)
		}
	}
}

func TestAnchorsExpand(t *testing.T) {
	c := parseOne(t, "kestrel:\n  labels: &l {a: b}\n  k3s: {labels: *l}\n")
	if c.Kestrel.K3s.Labels["a"] != "b" {
		t.Fatalf("alias not expanded: %+v", c.Kestrel.K3s)
	}
}

// TestErrors checks that each kind of problem is reported as
// file:line:col: path: problem.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"hostnme: x", `t.yaml:1:1: hostnme: unknown key "hostnme", did you mean "hostname"?`},
		{"ssh_authorised_keys: []", `t.yaml:1:1: ssh_authorised_keys: unknown key "ssh_authorised_keys", did you mean "ssh_authorized_keys"?`},
		{"kestrel:\n  modles: [a]", `t.yaml:2:3: kestrel.modles: unknown key "modles", did you mean "modules"?`},
		{"k3os:\n  sysctl:\n    a: b\n  passwrod: x", `t.yaml:4:3: k3os.passwrod: unknown key "passwrod", did you mean "password"?`},
		{"modules: [a]", `t.yaml:1:1: modules: unknown key "modules"; it belongs in the kestrel: section (kestrel.modules)`},
		{"kestrel: {hostname: a}", `t.yaml:1:11: kestrel.hostname: unknown key "hostname"; hostname is a top-level key`},
		{"zzzz: 1", `unknown key "zzzz"; valid keys: ssh_authorized_keys`},
		{"hostname: [a]", `t.yaml:1:11: hostname: expected a string, got a list`},
		{"ssh_authorized_keys: {a: b}", `t.yaml:1:22: ssh_authorized_keys: expected a list, got a mapping`},
		{"kestrel:\n  k3s_args: server --cluster-init", `t.yaml:2:13: kestrel.k3s_args: expected a list of arguments, got the single string "server --cluster-init"`},
		{"run_cmd:\n- [ls, -l]", `t.yaml:2:3: run_cmd[0]: cloud-init's argv-list form of a command is not supported`},
		{"users: [{name: a}]", `t.yaml:1:1: users: cloud-init's users is not supported; Kestrel's equivalent is kestrel.users`},
		{"write_files: [{path: /a, content: '!', encoding: gzip}]", `invalid gzip`},
		{"write_files: [{path: /a, content: !!binary 'AB*'}]", `t.yaml:1:35: write_files[0].content: invalid !!binary value (base64)`},
		{"kestrel: {install: {config_url: config.yaml}}", `kestrel.install.config_url: "config.yaml" is neither an absolute path nor an absolute http, https or file URL`},
		{"kestrel: {console_shell: maybe}", `t.yaml:1:26: kestrel.console_shell: expected true or false, got "maybe"`},
		{"kestrel:\n  network:\n    interfaces:\n      eth0: {mtu: big}", `t.yaml:4:19: kestrel.network.interfaces.eth0.mtu: expected an integer, got "big"`},
		{"kestrel:\n  network:\n    interfaces:\n      eth0: {mtu: 20}", `MTU 20 is outside 68-65535`},
		{"kestrel:\n  network:\n    interfaces:\n      eth0: {addresses: [10.0.0.1]}", `t.yaml:4:26: kestrel.network.interfaces.eth0.addresses[0]: "10.0.0.1" is not an address in CIDR notation`},
		{"kestrel:\n  network:\n    interfaces:\n      v: {vlan: {link: eth0, id: 5000}}", `VLAN id 5000 is outside 1-4094`},
		{"kestrel:\n  network:\n    interfaces:\n      v: {vlan: {link: a, id: 1}, bond: {members: [b]}}", `kestrel.network.interfaces.v: an interface is a VLAN or a bond, not both`},
		{"kestrel:\n  network:\n    interfaces:\n      b: {bond: {members: [a], mode: active-backpu}}", `did you mean "active-backup"?`},
		{"kestrel: {k3s: {role: master}}", `t.yaml:1:23: kestrel.k3s.role: "master" is not one of server, agent`},
		{"kestrel: {taints: [bad]}", `kestrel.taints[0]: "bad" is not a taint`},
		{"kestrel: {data_sources: [azure]}", `kestrel.data_sources[0]: "azure" is not one of`},
		{"kestrel: {server_url: 'ftp://x'}", `only http, https and file URLs are supported`},
		{"kestrel: {timezone: '../../etc/passwd'}", `is not a time zone name`},
		{"hostname: 'a b'", `"a b" is not a valid host name`},
		{"hostname: " + strings.Repeat("a", 60) + "." + strings.Repeat("b", 10), `is not a valid host name`},
		{"kestrel:\n  sysctl:\n    net..x: '1'", `t.yaml:3:5: kestrel.sysctl.net..x: sysctl name "net..x": invalid key component ""`},
		{"kestrel:\n  sysctl:\n    ../../etc/x: '1'", `invalid key component ".."`},
		{"kestrel: {modules: ['kvm =1']}", `kestrel.modules[0]: module kvm: parameter "=1": want key=value`},
		{"kestrel: {modules: ['../evil']}", `must not contain '/'`},
		{"write_files:\n- content: x", `t.yaml:2:3: write_files[0]: missing required key "path"`},
		{"write_files:\n- path: etc/x", `t.yaml:2:9: write_files[0].path: "etc/x" is not an absolute path`},
		{"write_files:\n- path: /x\n  encoding: rot13", `t.yaml:3:13: write_files[0].encoding: unknown encoding "rot13"`},
		{"write_files:\n- path: /x\n  encoding: b64\n  content: '%%%'", `t.yaml:4:12: write_files[0].content: invalid base64`},
		{"write_files:\n- path: /x\n  encoding: gz\n  content: plain", `write_files[0].content: invalid gzip`},
		{"write_files:\n- path: /x\n  permissions: '0999'", `write_files[0].permissions: "0999" is not an octal mode`},
		{"kestrel:\n  mounts:\n  - {path: /m}", `t.yaml:3:5: kestrel.mounts[0]: give exactly one of device, label, uuid`},
		{"kestrel:\n  users:\n  - {name: Bad}", `"Bad" is not a valid user name`},
		{"kestrel:\n  users:\n  - {name: kestrel}", `is a built-in user`},
		{"kestrel:\n  users:\n  - name:", `t.yaml:3:5: kestrel.users[0].name: must not be empty`},
		{"hostname: a\nhostname: b", `t.yaml:2:1: hostname: key given twice (first on line 1)`},
		{"kestrel: {sysctl: {a: '1', a: '2'}}", `kestrel.sysctl.a: key given twice`},
		{"kestrel: {sysctl: {a: [1]}}", `kestrel.sysctl.a: expected a string, got a list`},
		{"run_cmd: [a, ~]", `t.yaml:1:14: run_cmd[1]: empty list item`},
		{"hostname: a\n  bad: [", `t.yaml:2:`},
		// Syntax errors point at the offending line and column.
		{"kestrel:\n  hostname: foo\n  labels: {a: b\n", `t.yaml:3:11: invalid YAML: could not find flow mapping end token '}'`},
		{"kestrel:\n  hostname: foo\n\tbad: 1\n", `t.yaml:3:1: invalid YAML: found character '\t' that cannot start any token`},
		{"ssh_authorized_keys:\n  - \"ssh-ed25519 AAAA\n", `t.yaml:2:5: invalid YAML: could not find end character of double-quoted text`},
		{"- a\n- b", `t.yaml:1:1: expected a mapping, got a list`},
		{"a: 1\n---\nb: 2", `a second YAML document`},
		{"<<: {hostname: a}", `YAML merge keys (<<) are not supported`},
		{"kestrel: 5", `t.yaml:1:10: kestrel: expected a mapping, got "5"`},
	} {
		_, err := Parse("t.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.yaml, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got  %v\n want %s", tc.yaml, err, tc.want)
		}
		if _, ok := err.(Errors); !ok {
			t.Errorf("%q: error is %T, want Errors", tc.yaml, err)
		}
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := Parse("t.yaml", []byte("hostnme: a\nkestrel:\n  modles: []\n  timezone: [x]\n"))
	if es, ok := err.(Errors); !ok || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	doc := "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	if _, err := Parse("t.yaml", []byte(doc)); err == nil {
		t.Fatal("want an error")
	}
	doc = "kestrel:\n  run: &a [x,x,x,x,x,x,x,x,x,x]\n"
	if _, err := Parse("t.yaml", []byte(doc)); err == nil {
		t.Fatal("want an error")
	}
}

// TestWindowsEditedFile: an ESP config.yaml saved by a Windows editor
// (UTF-8 BOM, CRLF line ends) reads the same, with the same positions.
func TestWindowsEditedFile(t *testing.T) {
	c := parseOne(t, "\xef\xbb\xbfhostname: win\r\nkestrel:\r\n  timezone: UTC\r\n")
	if c.Hostname != "win" || c.Kestrel.Timezone != "UTC" {
		t.Fatalf("%+v", c)
	}
	_, err := Parse("t.yaml", []byte("\xef\xbb\xbfhostname: win\r\nkestrel:\r\n  tz: UTC\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:3:3: kestrel.tz: unknown key") {
		t.Fatalf("%v", err)
	}
}
