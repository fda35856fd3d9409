package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestK3OSSpellings: every spelling k3OS's FuzzyNames accepted, beyond the
// corpus, and its scalar-to-list coercion.
func TestK3OSSpellings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want Config
	}{
		{"ssh_authorized_key: ssh-ed25519 AAAA k", Config{SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA k"}}},
		{"sshAuthorizedKeys: [a]", Config{SSHAuthorizedKeys: []string{"a"}}},
		{"sshauthorizedkey: [a]", Config{SSHAuthorizedKeys: []string{"a"}}},
		{"write_file: [{path: /a, permission: '0600'}]", Config{WriteFiles: []File{{Path: "/a", Permissions: "0600"}}}},
		{"writeFiles: [{path: /a}]", Config{WriteFiles: []File{{Path: "/a"}}}},
		{"runcmd: echo hi\nbootcmd: [b]\ninitcmd: [i]", Config{RunCmd: []string{"echo hi"}, BootCmd: []string{"b"}, InitCmd: []string{"i"}}},
		{"runCmd: [r]", Config{RunCmd: []string{"r"}}},
		{"k3os:\n  datasource: aws\n", Config{Kestrel: Section{DataSources: []string{"aws"}}}},
		{"k3os:\n  data_source: [aws, cdrom]\n", Config{Kestrel: Section{DataSources: []string{"aws", "cdrom"}}}},
		{"k3os:\n  dns_nameserver: 1.1.1.1\n  ntp_server: pool.ntp.org\n  module: kvm\n  taint: a=b:NoSchedule\n  label: {a: b}\n  k3s_arg: server\n",
			Config{Kestrel: Section{DNSNameservers: []string{"1.1.1.1"}, NTPServers: []string{"pool.ntp.org"}, Modules: []string{"kvm"}, Taints: []string{"a=b:NoSchedule"}, Labels: map[string]string{"a": "b"}, K3sArgs: []string{"server"}}}},
		{"k3os:\n  serverUrl: https://s:6443\n  server_url: https://t:6443\n", Config{Kestrel: Section{ServerURL: "https://t:6443"}}},
		{"k3os:\n  sysctls: {a.b: '1'}\n  dnsnameservers: [8.8.8.8]\n", Config{Kestrel: Section{Sysctl: map[string]string{"a.b": "1"}, DNSNameservers: []string{"8.8.8.8"}}}},
		{"k3os:\n  install: {configUrl: /c.yaml, force_efi: true, isourl: https://x/k.iso, poweroff: true}\n", Config{Kestrel: Section{Install: Install{ConfigURL: "/c.yaml", ForceEFI: true, ISOURL: "https://x/k.iso", PowerOff: true}}}},
		{"k3os:\n  wifi: [{ssid: home, passphrase: p}]\n", Config{Kestrel: Section{Wifi: []Wifi{{Name: "home", Passphrase: "p"}}}}},
		{"kestrel:\n  users: [{name: a, ssh_authorized_keys: k, groups: wheel}]\n", Config{Kestrel: Section{Users: []User{{Name: "a", SSHAuthorizedKeys: []string{"k"}, Groups: []string{"wheel"}}}}}},
	} {
		d, err := Parse("t.yaml", []byte(tc.yaml))
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		c, err := d.Config()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*c, tc.want) {
			t.Errorf("%q:\n got  %+v\n want %+v", tc.yaml, *c, tc.want)
		}
	}
	// k3OS's "es"-stripped forms are not words: unknown, with a hint.
	for yaml, want := range map[string]string{
		"k3os: {modul: [kvm]}":      `unknown key "modul"`,
		"write_fil: [{path: /a}]":   `unknown key "write_fil", did you mean "write_files"?`,
		"k3os: {k3s_argz: [a]}":     `did you mean "k3s_args"?`,
		"k3os: {datasourse: [aws]}": `unknown key "datasourse"`,
	} {
		d, err := Parse("t.yaml", []byte(yaml))
		if err == nil || !strings.Contains(err.Error(), want) || !err.(Errors).OnlyUnknownKeys() || d == nil {
			t.Errorf("%q: %v, want only the unknown key %s", yaml, err, want)
		}
	}
}

// TestUnknownKeyLeavesTheRest: a source with an unknown key still gives
// its other keys; an entry holding one is left out whole; a type error
// anywhere still refuses the source.
func TestUnknownKeyLeavesTheRest(t *testing.T) {
	doc := "ssh_authorized_keys: [ssh-ed25519 AAAA op]\nhostnmae: x\nwrite_files:\n- {path: /a, append: true}\n- {path: /b}\nk3os:\n  token: T\n  fancy: 1\n"
	d, err := Parse("t.yaml", []byte(doc))
	es, _ := err.(Errors)
	if d == nil || len(es) != 3 || !es.OnlyUnknownKeys() {
		t.Fatalf("doc %v errors %v", d != nil, err)
	}
	for i, want := range []string{`t.yaml:2:1: hostnmae: unknown key "hostnmae", did you mean "hostname"?`, `t.yaml:4:14: write_files[0].append: cloud-init's append`, `t.yaml:8:3: k3os.fancy: unknown key "fancy"`} {
		if !strings.HasPrefix(es[i].Error(), want) {
			t.Errorf("error %d = %v, want %s", i, es[i], want)
		}
	}
	c, _ := d.Config()
	if c.Kestrel.Token != "T" || len(c.SSHAuthorizedKeys) != 1 || len(c.WriteFiles) != 1 || c.WriteFiles[0].Path != "/b" {
		t.Errorf("rest of the source: %+v", c)
	}
	if d, err := Parse("t.yaml", []byte(doc+"hostname: [a]\n")); d != nil || err == nil || err.(Errors).OnlyUnknownKeys() {
		t.Errorf("a type error must refuse the source: %v %v", d != nil, err)
	}
}

// TestCmdlineK3OS: the README's repeated singular key builds a list, an
// unknown or unprefixed key does not lose the token next to it.
func TestCmdlineK3OS(t *testing.T) {
	d, err := ParseCmdline("cmdline", "k3os.token=T k3os.dns_nameserver=1.1.1.1 k3os.dns_nameserver=8.8.8.8 k3os.datasource=aws k3os.install.config_url=/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := d.Config()
	if c.Kestrel.Token != "T" || !reflect.DeepEqual(c.Kestrel.DNSNameservers, []string{"1.1.1.1", "8.8.8.8"}) || c.Kestrel.DataSources[0] != "aws" || c.Kestrel.Install.ConfigURL != "/config.yaml" {
		t.Errorf("%+v", c.Kestrel)
	}
	d, err = ParseCmdline("cmdline", "hostname=h k3os.tokn=x k3os.token=T run_cmd=x quiet")
	es, _ := err.(Errors)
	if d == nil || len(es) != 3 || !es.OnlyUnknownKeys() {
		t.Fatalf("doc %v errors %v", d != nil, err)
	}
	for i, want := range []string{"cmdline:1:1: hostname: k3OS read unprefixed keys", `cmdline:1:12: kestrel.tokn: unknown key "tokn", did you mean "token"?`, "cmdline:1:37: run_cmd: k3OS read unprefixed keys"} {
		if !strings.HasPrefix(es[i].Error(), want) {
			t.Errorf("error %d = %v, want %s", i, es[i], want)
		}
	}
	if c, _ := d.Config(); c.Kestrel.Token != "T" || c.Hostname != "" {
		t.Errorf("%+v", c)
	}
}

// TestBinary: !!binary values are bytes, and encoding applies after.
func TestBinary(t *testing.T) {
	doc := "write_files:\n- path: /a\n  content: !!binary |\n    AAEC\n    /w==\n- path: /b\n  encoding: b64\n  content: !!binary YUdWc2JHOD0=\n"
	d, err := Parse("t.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Merge(d)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := r.Config.WriteFiles[0].Data()
	b, err := r.Config.WriteFiles[1].Data()
	if string(a) != "\x00\x01\x02\xff" || string(b) != "hello" || err != nil {
		// !!binary gives the bytes "aGVsbG8=", which encoding: b64 decodes.
		t.Errorf("a = %q, b = %q %v", a, b, err)
	}
}

// TestSyntaxLocateBounded: the second parser (goccy, for columns) is not
// asked about deep or large sources, which yaml.v3 still reports with
// its line; a shallow one still gets goccy's column.
func TestSyntaxLocateBounded(t *testing.T) {
	for _, tc := range []struct {
		data  string
		depth int
	}{
		{"a: b\n", 0},
		{"a: [[b]]\n", 2},
		{"a:\n  b:\n    c: [d\n", 3},
		{"a: '[[[['\n", 4}, // quoted brackets count: an overestimate only skips goccy
	} {
		if got := nestingDepth([]byte(tc.data)); got != tc.depth {
			t.Errorf("nestingDepth(%q) = %d, want %d", tc.data, got, tc.depth)
		}
	}
	deep := "a: " + strings.Repeat("[", 80<<10)
	if se := locateSyntax([]byte(deep), locateTimeout); se != nil {
		t.Errorf("goccy asked about 80 KB of nesting")
	}
	_, err := Parse("t.yaml", []byte(deep))
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:1:1: invalid YAML") {
		t.Errorf("deep: %v", err)
	}
	_, err = Parse("t.yaml", []byte("kestrel:\n  labels: {a: b\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:2:11: invalid YAML") {
		t.Errorf("shallow: %v", err)
	}
}

// BenchmarkParseDeepMalformed is issue 10's stall: 80 KB of nesting that
// took PID 1 72 s when goccy was asked about it.
func BenchmarkParseDeepMalformed(b *testing.B) {
	deep := []byte("a: " + strings.Repeat("[", 80<<10))
	for i := 0; i < b.N; i++ {
		Parse("t.yaml", deep)
	}
}

// TestSourceSizeCap: local files are capped like fetched ones.
func TestSourceSizeCap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("hostname: big\n")
	f.Truncate(MaxSourceSize + 1) // sparse: the rest reads as NULs
	f.Close()
	s := &Sources{}
	s.AddFile(p)
	if len(s.Documents()) != 0 || len(s.Errors()) != 1 || !strings.Contains(s.Errors()[0].Error(), p+": larger than the 16 MiB limit") {
		t.Errorf("errors %v", s.Errors())
	}
	if _, err := Parse("t.yaml", make([]byte, MaxSourceSize+1)); err == nil || !strings.Contains(err.Error(), "16 MiB limit") {
		t.Errorf("Parse: %v", err)
	}
}
