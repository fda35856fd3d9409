package config

import (
	"strings"
	"testing"
)

// TestKeysCoverSchema: every field of the schema has a table entry and a
// phase (its own or inherited), and every entry is a real field.
func TestKeysCoverSchema(t *testing.T) {
	paths := SchemaPaths()
	seen := map[string]bool{}
	for _, p := range paths {
		seen[p] = true
		k := LookupKey(p)
		if k == nil {
			t.Errorf("schema key %s has no entry in Keys", p)
			continue
		}
		if k.Doc == "" {
			t.Errorf("%s has no doc", p)
		}
		if p != "kestrel" && PhaseOf(p) == PhaseNone {
			t.Errorf("%s has no phase", p)
		}
	}
	for _, k := range Keys {
		if !seen[k.Path] {
			t.Errorf("Keys entry %s is not in the schema", k.Path)
		}
	}
	if len(paths) != len(Keys) {
		t.Errorf("%d schema paths, %d Keys entries", len(paths), len(Keys))
	}
}

func TestPhases(t *testing.T) {
	for path, want := range map[string]Phase{
		"kestrel.modules":                        PhaseInitramfs,
		"kestrel.sysctl":                         PhaseInitramfs,
		"kestrel.sysctl.vm.swappiness":           PhaseInitramfs,
		"init_cmd":                               PhaseInitramfs,
		"hostname":                               PhaseBoot,
		"kestrel.users":                          PhaseBoot,
		"kestrel.users[3].name":                  PhaseBoot,
		"ssh_authorized_keys":                    PhaseBoot,
		"kestrel.password":                       PhaseBoot,
		"write_files[0].content":                 PhaseBoot,
		"kestrel.environment":                    PhaseBoot,
		"kestrel.network.interfaces.eth0.10.mtu": PhaseBoot,
		"kestrel.timezone":                       PhaseBoot,
		"kestrel.mounts":                         PhaseBoot,
		"boot_cmd":                               PhaseBoot,
		"kestrel.data_sources":                   PhaseNetworkUp,
		"kestrel.config_url":                     PhaseNetworkUp,
		"kestrel.ntp_servers":                    PhaseNetworkUp,
		"run_cmd":                                PhaseNetworkUp,
		"kestrel.k3s.role":                       PhaseNetworkUp,
		"kestrel.install.device":                 PhaseInstall,
	} {
		if got := PhaseOf(path); got != want {
			t.Errorf("PhaseOf(%s) = %s, want %s", path, got, want)
		}
	}
	for entry, want := range map[string]Phase{
		"ssh-ed25519 AAAA x": PhaseBoot,
		"github:alice":       PhaseNetworkUp,
		"gitlab:bob":         PhaseNetworkUp,
		"https://k/keys":     PhaseNetworkUp,
	} {
		if got := SSHKeyPhase(entry); got != want {
			t.Errorf("SSHKeyPhase(%s) = %s", entry, got)
		}
	}
	if ks := KeysIn(PhaseInitramfs); len(ks) != 3 {
		t.Errorf("initramfs keys: %v", ks)
	}
}

func TestSchemaPath(t *testing.T) {
	for in, want := range map[string]string{
		"write_files[2].path":                             "write_files[].path",
		"kestrel.sysctl.net.ipv4.ip_forward":              "kestrel.sysctl.*",
		"kestrel.network.interfaces.eth0.10.vlan.id":      "kestrel.network.interfaces.*.vlan.id",
		"k3os.sysctls.a":                                  "kestrel.sysctl.*",
		"kestrel.registries.configs.r:5000.auth.password": "kestrel.registries.configs.*.auth.password",
	} {
		if got := SchemaPath(in); got != want {
			t.Errorf("SchemaPath(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestK3sSettings(t *testing.T) {
	c := parseOne(t, "k3os:\n  server_url: https://s:6443\n  token: legacy\n  labels: {a: '1'}\n  k3s_args: [agent, --x]\nkestrel:\n  k3s: {token: new, labels: {b: '2'}, args: [--y]}\n")
	k := c.Kestrel.K3sSettings()
	if k.Role != "agent" || k.ServerURL != "https://s:6443" || k.Token != "new" || k.Labels["a"] != "1" || k.Labels["b"] != "2" || len(k.Args) != 2 || k.Args[0] != "--x" {
		t.Fatalf("%+v", k)
	}
	if r := (Section{}).K3sSettings().Role; r != "server" {
		t.Fatalf("default role %s", r)
	}
}

func TestChanged(t *testing.T) {
	a := parseOne(t, "hostname: a\nkestrel: {sysctl: {x: '1'}, k3s: {role: server}}\n")
	b := parseOne(t, "hostname: b\nkestrel: {sysctl: {x: '1'}, k3s: {role: agent}, modules: []}\n")
	var got []string
	for _, k := range Changed(a, b) {
		got = append(got, k.Path)
	}
	if strings.Join(got, ",") != "hostname,kestrel.k3s" {
		t.Fatalf("Changed = %v", got)
	}
	if len(Changed(a, a)) != 0 {
		t.Fatal("no change expected")
	}
}
