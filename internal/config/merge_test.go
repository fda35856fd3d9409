package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestK3OSDocumentUnchanged(t *testing.T) {
	data, err := os.ReadFile("testdata/k3os.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse("k3os.yaml", data)
	if err != nil {
		t.Fatalf("k3OS example rejected: %v", err)
	}
	c, _ := d.Config()
	k := c.Kestrel
	if c.Hostname != "myhost" || len(c.SSHAuthorizedKeys) != 2 || c.WriteFiles[0].Permissions != "0755" ||
		k.Sysctl["kernel.printk"] != "4 4 1 7" || k.Password != "rancher" || len(k.Wifi) != 2 || k.Install.Device != "/dev/sda" ||
		k.Environment["http_proxy"] != "http://myserver" || len(k.Taints) != 2 || k.K3sArgs[1] != "--cluster-init" {
		t.Fatalf("decoded wrong: %+v", c)
	}
	if s := k.K3sSettings(); s.Role != "server" || s.ServerURL != "https://someserver:6443" || s.Args[0] != "--cluster-init" {
		t.Fatalf("k3s settings: %+v", s)
	}
}

func mustDoc(t *testing.T, name, src string) *Document {
	t.Helper()
	d, err := Parse(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestMergeRules: maps merge key by key, lists replace, scalars replace,
// null keeps the earlier value, [] clears.
func TestMergeRules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     string
		want     Config
		wantFrom map[string]string // path -> file:line:col
	}{
		{"scalar replaces", "hostname: a", "hostname: b", Config{Hostname: "b"}, map[string]string{"hostname": "b.yaml:1:11"}},
		{"map merges key by key", "kestrel: {sysctl: {a: '1', b: '2'}}", "kestrel:\n  sysctl: {b: '3', c: '4'}",
			Config{Kestrel: Section{Sysctl: map[string]string{"a": "1", "b": "3", "c": "4"}}},
			map[string]string{"kestrel.sysctl.a": "a.yaml:1:23", "kestrel.sysctl.b": "b.yaml:2:15", "kestrel.sysctl.c": "b.yaml:2:23"}},
		{"list replaces", "ssh_authorized_keys: [k1, k2]", "ssh_authorized_keys: [k3]", Config{SSHAuthorizedKeys: []string{"k3"}},
			map[string]string{"ssh_authorized_keys[0]": "b.yaml:1:23"}},
		{"empty list clears", "run_cmd: [a]", "run_cmd: []", Config{RunCmd: []string{}}, nil},
		{"null keeps", "hostname: a", "hostname:\nkestrel: ~", Config{Hostname: "a"}, map[string]string{"hostname": "a.yaml:1:11"}},
		{"section keys merge", "kestrel: {password: p, timezone: UTC}", "k3os: {timezone: Europe/Paris}",
			Config{Kestrel: Section{Password: "p", Timezone: "Europe/Paris"}}, nil},
		{"interfaces merge per interface and per key", "kestrel:\n  network:\n    interfaces:\n      eth0: {addresses: [10.0.0.2/24], mtu: 1500}\n      eth1: {dhcp: true}",
			"kestrel:\n  network:\n    interfaces:\n      eth0: {mtu: 9000}",
			Config{Kestrel: Section{Network: Network{Interfaces: map[string]Interface{"eth0": {Addresses: []string{"10.0.0.2/24"}, MTU: 9000}, "eth1": {DHCP: bp(true)}}}}},
			map[string]string{"kestrel.network.interfaces.eth0.mtu": "b.yaml:4:19", "kestrel.network.interfaces.eth0.addresses[0]": "a.yaml:4:26"}},
		{"list of mappings replaces", "write_files: [{path: /a}, {path: /b}]", "write_files: [{path: /c}]", Config{WriteFiles: []File{{Path: "/c"}}}, nil},
	} {
		r, err := Merge(mustDoc(t, "a.yaml", tc.a), mustDoc(t, "b.yaml", tc.b))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*r.Config, tc.want) {
			t.Errorf("%s:\n got  %+v\n want %+v", tc.name, *r.Config, tc.want)
		}
		for path, want := range tc.wantFrom {
			if p, ok := r.Origin(path); !ok || p.String() != want {
				t.Errorf("%s: origin of %s = %v %v, want %s", tc.name, path, p, ok, want)
			}
		}
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadLocalOrder writes every local source into a temporary root and
// checks that each later source wins for the key it sets, that bad
// sources are skipped whole with a file:line:col error, and that an
// unknown key is reported while the rest of its source applies.
func TestLoadLocalOrder(t *testing.T) {
	root := t.TempDir()
	esp := filepath.Join(root, "esp")
	loc := DefaultLocations(root, esp, filepath.Join(root, "cmdline"))
	write(t, loc.Defaults, "hostname: from-defaults\nkestrel:\n  ntp_servers: [pool.ntp.org]\n  timezone: UTC\n  sysctl: {a: defaults}\n")
	write(t, loc.Cmdline, "console=ttyS0 kestrel.hostname=from-cmdline kestrel.timezone=Europe/Berlin kestrel.sysctl.b=cmdline\n")
	write(t, loc.ESPConfig, "hostname: from-esp\nssh_authorized_keys: [esp-key]\nkestrel: {sysctl: {c: esp}}\n")
	write(t, loc.StateConfig, "hostname: from-state\nkestrel: {sysctl: {d: state}}\n")
	write(t, filepath.Join(loc.StateConfigDir, "20-b.yaml"), "hostname: from-20\n")
	write(t, filepath.Join(loc.StateConfigDir, "10-a.yaml"), "hostname: from-10\nkestrel: {sysctl: {e: ten}}\n")
	write(t, filepath.Join(loc.StateConfigDir, "30-bad.yaml"), "hostname: from-bad\nssh_authorized_keys: []\nkestrel:\n  sysctl: {f: bad}\n  modules: {x: y}\n")
	write(t, filepath.Join(loc.StateConfigDir, "35-unknown.yaml"), "kestrel:\n  sysctl: {g: unknown}\n  modles: [x]\n")
	write(t, filepath.Join(loc.StateConfigDir, "40-badyaml.yaml"), "hostname: [\n")
	write(t, filepath.Join(loc.StateConfigDir, "notes.txt"), "ignored")

	s := LoadLocal(loc)
	r, err := s.Merge()
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config
	if c.Hostname != "from-20" {
		t.Errorf("hostname = %s (config.d in lexical order should win)", c.Hostname)
	}
	if c.Kestrel.Timezone != "Europe/Berlin" || len(c.Kestrel.NTPServers) != 1 {
		t.Errorf("cmdline over defaults: %+v", c.Kestrel)
	}
	want := map[string]string{"a": "defaults", "b": "cmdline", "c": "esp", "d": "state", "e": "ten", "g": "unknown"}
	if !reflect.DeepEqual(c.Kestrel.Sysctl, want) {
		t.Errorf("sysctl = %v, want %v", c.Kestrel.Sysctl, want)
	}
	if !reflect.DeepEqual(c.SSHAuthorizedKeys, []string{"esp-key"}) {
		t.Errorf("keys from the last good config lost: %v", c.SSHAuthorizedKeys)
	}
	if len(r.Errors) != 3 {
		t.Fatalf("errors: %v", r.Errors)
	}
	for i, want := range []string{
		filepath.Join(loc.StateConfigDir, "30-bad.yaml") + `:5:12: kestrel.modules: expected a list, got a mapping`,
		filepath.Join(loc.StateConfigDir, "35-unknown.yaml") + `:3:3: kestrel.modles: unknown key "modles", did you mean "modules"?`,
		filepath.Join(loc.StateConfigDir, "40-badyaml.yaml") + `:1:11: invalid YAML`,
	} {
		if !strings.HasPrefix(r.Errors[i].Error(), want) {
			t.Errorf("error %d = %v, want %s", i, r.Errors[i], want)
		}
	}
	if p, _ := r.Origin("kestrel.sysctl.b"); p.String() != loc.Cmdline+":1:76" {
		t.Errorf("cmdline origin %v", p)
	}
	if p, _ := r.Origin("hostname"); p.File != filepath.Join(loc.StateConfigDir, "20-b.yaml") {
		t.Errorf("hostname origin %v", p)
	}
	if len(r.Sources) != 7 {
		t.Errorf("sources %v", r.Sources)
	}
	// An unknown key on the command line is reported; the rest applies.
	write(t, loc.Cmdline, "kestrel.timezone=Europe/Berlin kestrel.bogus=1\n")
	r, _ = LoadLocal(loc).Merge()
	if r.Config.Kestrel.Timezone != "Europe/Berlin" || len(r.Errors) != 4 || !strings.Contains(r.Errors[0].Error(), "cmdline:1:32: kestrel.bogus: unknown key") {
		t.Errorf("cmdline with an unknown key: tz=%s errors=%v", r.Config.Kestrel.Timezone, r.Errors)
	}
	// A badly typed value skips the command line whole.
	write(t, loc.Cmdline, "kestrel.timezone=Europe/Berlin kestrel.k3s.upgrade_controller=maybe\n")
	r, _ = LoadLocal(loc).Merge()
	if r.Config.Kestrel.Timezone != "UTC" || len(r.Errors) != 4 || !strings.Contains(r.Errors[0].Error(), "cmdline:1:32: kestrel.k3s.upgrade_controller:") {
		t.Errorf("bad cmdline: tz=%s errors=%v", r.Config.Kestrel.Timezone, r.Errors)
	}
}

func TestShow(t *testing.T) {
	r, err := Merge(mustDoc(t, "a.yaml", "hostname: a\nkestrel:\n  password: secret\n  sysctl: {x: '1'}\n"), mustDoc(t, "b.yaml", "run_cmd: [echo]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.Show(&b, false); err != nil {
		t.Fatal(err)
	}
	// Keys come in schema order, whatever the order of the sources.
	want := "hostname: a # a.yaml:1:11\nrun_cmd:\n  - echo # b.yaml:1:11\nkestrel:\n  sysctl:\n    x: '1' # a.yaml:4:15\n  password: <redacted> # a.yaml:3:13\n"
	if b.String() != want {
		t.Errorf("Show:\n%s\nwant:\n%s", b.String(), want)
	}
	// The output of show is itself a valid config.
	if _, err := Parse("show", b.Bytes()); err != nil {
		t.Errorf("show output does not parse: %v", err)
	}
	vals := r.Values()
	if len(vals) != 4 || vals[1].Path != "kestrel.password" || vals[1].From.String() != "a.yaml:3:13" || vals[3].Path != "run_cmd[0]" {
		t.Errorf("Values = %+v", vals)
	}
}

func FuzzParseYAML(f *testing.F) {
	seeds := []string{"hostname: a", "kestrel: {sysctl: {a: b}}", "k3os:\n  password: x\nkestrel:\n  password: y\n", "- a", "a: &a [*a]", "write_files: [{path: /a, encoding: gz+b64, content: H4sI}]"}
	if b, err := os.ReadFile("testdata/k3os.yaml"); err == nil {
		seeds = append(seeds, string(b))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse("f.yaml", data)
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, e := range es {
				if e.Pos.File != "f.yaml" || e.Pos.Line < 1 {
					t.Fatalf("error without position: %v", e)
				}
			}
			return
		}
		r, err := Merge(d, d)
		if err != nil {
			t.Fatalf("valid document does not merge: %v", err)
		}
		var b bytes.Buffer
		if err := r.Show(&b, true); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse("show", b.Bytes()); err != nil {
			t.Fatalf("show output does not parse: %v\n%s", err, b.String())
		}
	})
}
