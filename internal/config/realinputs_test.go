package config_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/osfiles/writefiles"
	"github.com/kestrel-os/kestrel/internal/realinputs"
)

// verdict is what a k3OS or cloud-init user should get from one real
// input: it applies as is ("ok"), it applies without its unknown keys,
// each reported ("unknown"), or it is refused ("rejected"). errs are
// substrings of the expected errors, file:line:col first; check looks at
// the values of a source that applies.
type verdict struct {
	kind  string
	errs  []string
	check func(t *testing.T, c *config.Config)
}

var configVerdicts = map[string]verdict{
	"config/ci-nocloud-password.yaml": {"unknown", []string{
		"config/ci-nocloud-password.yaml:5:1: password: cloud-init's password is not supported; Kestrel's equivalent is kestrel.password",
		"config/ci-nocloud-password.yaml:6:1: chpasswd: cloud-init's chpasswd is not supported; Kestrel's equivalent is kestrel.password",
		"config/ci-nocloud-password.yaml:7:1: ssh_pwauth: cloud-init's ssh_pwauth is not supported; Kestrel's equivalent is",
	}, nil},
	"config/ci-ntp.yaml": {"unknown", []string{"config/ci-ntp.yaml:7:1: ntp: cloud-init's ntp is not supported; Kestrel's equivalent is kestrel.ntp_servers"}, nil},
	"config/ci-run-cmds.yaml": {"rejected", []string{
		"config/ci-run-cmds.yaml:19:4: runcmd[0]: cloud-init's argv-list form of a command is not supported; Kestrel's equivalent is one shell command per item",
		"config/ci-run-cmds.yaml:26:4: runcmd[5]: cloud-init's argv-list form",
	}, nil},
	"config/ci-ssh-keys.yaml": {"unknown", []string{
		"config/ci-ssh-keys.yaml:16:1: ssh_keys: cloud-init's ssh_keys is not supported",
		"config/ci-ssh-keys.yaml:27:1: no_ssh_fingerprints: cloud-init's no_ssh_fingerprints is not supported",
		"config/ci-ssh-keys.yaml:31:1: ssh: cloud-init's ssh is not supported",
	}, func(t *testing.T, c *config.Config) {
		if len(c.SSHAuthorizedKeys) != 2 || !strings.HasSuffix(c.SSHAuthorizedKeys[1], "smoser@brickies") {
			t.Errorf("keys %q", c.SSHAuthorizedKeys)
		}
	}},
	"config/ci-user-groups.yaml": {"unknown", []string{
		"config/ci-user-groups.yaml:6:1: groups: cloud-init's groups is not supported; Kestrel's equivalent is kestrel.users[].groups",
		"config/ci-user-groups.yaml:11:1: users: cloud-init's users is not supported; Kestrel's equivalent is kestrel.users",
	}, nil},
	"config/ci-write-files-append.yaml": {"unknown", []string{
		"config/ci-write-files-append.yaml:8:3: write_files[0].append: cloud-init's append is not supported; Kestrel writes the whole file",
	}, func(t *testing.T, c *config.Config) {
		if len(c.WriteFiles) != 0 {
			t.Errorf("an append entry must not overwrite the file: %+v", c.WriteFiles)
		}
	}},
	"config/ci-write-files-gzip-binary.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if b, err := c.WriteFiles[0].Data(); err != nil || string(b) != "#!/bin/sh\necho hello world\n" {
			t.Errorf("!!binary gzip content = %q, %v", b, err)
		}
	}},
	"config/ci-write-files-legacy.yaml": {"rejected", []string{
		"config/ci-write-files-legacy.yaml:14:5: write_files[0].compression: cloud-init's legacy compression key is not supported; Kestrel's equivalent is encoding",
		"config/ci-write-files-legacy.yaml:18:5: write_files[0].perms: cloud-init's legacy perms key is not supported; Kestrel's equivalent is permissions",
		// The example's own "...." truncation is not base64.
		"config/ci-write-files-legacy.yaml:27:14: write_files[2].content: invalid !!binary value (base64)",
	}, nil},
	"config/ci-write-files-path-only.yaml": {"ok", nil, nil},
	"config/k3os-alexwaibel-proxmox.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		k := c.Kestrel.K3sSettings()
		if c.Hostname != "k3os-node-1" || k.Role != "server" || len(k.Args) != 20 || c.SSHAuthorizedKeys[0] != "github:alexwaibel" {
			t.Errorf("hostname %q k3s %+v", c.Hostname, k)
		}
	}},
	"config/k3os-ampere-openstack-minion.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		k := c.Kestrel.K3sSettings()
		if k.Role != "agent" || k.ServerURL != "https://10.20.0.5:6443" || k.Token != "CLUSTER_SECRET_PLACEHOLDER" ||
			!reflect.DeepEqual(c.Kestrel.DataSources, []string{"openstack"}) || !reflect.DeepEqual(c.Kestrel.DNSNameservers, []string{"1.1.1.1"}) {
			t.Errorf("k3s %+v section %+v", k, c.Kestrel)
		}
	}},
	"config/k3os-bad-extra-space.yaml":          {"rejected", []string{"config/k3os-bad-extra-space.yaml:7:"}, nil},
	"config/k3os-bad-section-not-indented.yaml": {"unknown", []string{`config/k3os-bad-section-not-indented.yaml:4:1: server_url: unknown key "server_url"; it belongs in the kestrel: section (kestrel.server_url)`, `config/k3os-bad-section-not-indented.yaml:5:1: token: unknown key "token"; it belongs in the kestrel: section`}, nil},
	"config/k3os-bad-tab-indent.yaml":           {"rejected", []string{`config/k3os-bad-tab-indent.yaml:6:1: invalid YAML: found character '\t' that cannot start any token`}, nil},
	"config/k3os-bad-wrong-types.yaml": {"rejected", []string{
		"config/k3os-bad-wrong-types.yaml:6:3: k3os.labels: expected a mapping, got a list",
		`config/k3os-bad-wrong-types.yaml:8:13: k3os.k3s_args: expected a list of arguments, got the single string "server --cluster-init"`,
	}, nil},
	"config/k3os-bohica-master.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		k := c.Kestrel.K3sSettings()
		if c.Kestrel.Environment["K3S_TOKEN"] != "K3S_TOKEN_PLACEHOLDER" || k.Labels["zone"] != "us-east-1a" || k.Taints[0] != "CriticalAddonsOnly=true:NoExecute" || len(c.InitCmd) != 1 {
			t.Errorf("%+v", c.Kestrel)
		}
	}},
	"config/k3os-iso-placeholder.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if !reflect.DeepEqual(*c, config.Config{}) {
			t.Errorf("a comment-only config sets %+v", c)
		}
	}},
	"config/k3os-issue357-writefiles.yaml": {"ok", nil, nil},
	"config/k3os-issue381-rpi.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if c.SSHAuthorizedKeys != nil || c.Kestrel.K3sArgs[2] != "--server https://k3s.sud0.com:6443" || c.Kestrel.DNSNameservers[0] != "192.168.88.28" {
			t.Errorf("%+v", c)
		}
	}},
	"config/k3os-issue424-traefik-manifest.yaml": {"ok", nil, nil},
	"config/k3os-issue448-keys-not-a-list.yaml":  {"rejected", []string{"config/k3os-issue448-keys-not-a-list.yaml:5:1: invalid YAML"}, nil},
	"config/k3os-issue448-nuc.yaml": {"unknown", []string{`config/k3os-issue448-nuc.yaml:12:1: ntp_servers: unknown key "ntp_servers"; it belongs in the kestrel: section (kestrel.ntp_servers)`}, func(t *testing.T, c *config.Config) {
		if c.Hostname != "nuc-1" || c.Kestrel.Token != "demo" || c.Kestrel.Password != "rancher" || len(c.RunCmd) != 2 || c.SSHAuthorizedKeys[0] != "github:dweomer" {
			t.Errorf("the rest of the config must apply: %+v", c)
		}
	}},
	"config/k3os-issue93-enconding-typo.yaml": {"rejected", []string{
		`config/k3os-issue93-enconding-typo.yaml:4:3: write_files[0].enconding: unknown key "enconding", did you mean "encoding"?`,
		`config/k3os-issue93-enconding-typo.yaml:9:9: write_files[0].path: "test2.txt" is not an absolute path`,
	}, nil},
	"config/k3os-issue99-k3_args-typo.yaml": {"unknown", []string{`config/k3os-issue99-k3_args-typo.yaml:9:3: k3os.k3_args: unknown key "k3_args", did you mean "k3s_args"?`}, func(t *testing.T, c *config.Config) {
		if c.Hostname != "myhost" || !reflect.DeepEqual(c.Kestrel.Modules, []string{"gre"}) || c.Kestrel.K3sArgs != nil {
			t.Errorf("%+v", c)
		}
	}},
	"config/k3os-packer-hetzner-datasource.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if !reflect.DeepEqual(c.Kestrel.DataSources, []string{"hetzner"}) {
			t.Errorf("data_sources %q", c.Kestrel.DataSources)
		}
	}},
	"config/k3os-picl-agent.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if k := c.Kestrel.K3sSettings(); k.Role != "agent" || k.Token != "MASTER_TOKEN" || k.ServerURL != "https://MASTER_IP:6443" {
			t.Errorf("%+v", k)
		}
	}},
	"config/k3os-readme-writefiles.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		// The README's /bin/arch: the ELF, not its base64 text.
		if b, err := c.WriteFiles[2].Data(); err != nil || len(b) != 171 || !bytes.HasPrefix(b, []byte("\x7fELF")) {
			t.Errorf("/bin/arch: %d bytes %q, %v", len(b), trunc(b), err)
		}
	}},
	"config/k3os-terotuomala-remaster.yml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if c.Kestrel.Modules[0] != "bonding mode=4 miimon=100 lacp_rate=1" || c.Kestrel.Sysctl["kernel.printk"] != "4 4 1 7" || len(c.Kestrel.NTPServers) != 4 {
			t.Errorf("%+v", c.Kestrel)
		}
	}},
	"config/k3os-vagrant-config.yml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if len(c.SSHAuthorizedKeys) != 2 || c.Kestrel.Password != "rancher" || len(c.RunCmd) != 1 {
			t.Errorf("%+v", c)
		}
	}},
	"k3os-aws-config.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if !reflect.DeepEqual(c.Kestrel.DataSources, []string{"aws"}) {
			t.Errorf("data_sources %q", c.Kestrel.DataSources)
		}
	}},
	"k3os-proxmox-cloud.yml": {"ok", nil, func(t *testing.T, c *config.Config) {
		if !reflect.DeepEqual(c.Kestrel.DataSources, []string{"cdrom"}) || c.Kestrel.Password != "YourSSHPasswordReplaceIt" || len(c.WriteFiles) != 2 {
			t.Errorf("%+v", c.Kestrel)
		}
	}},
	"k3os-readme-config.yaml": {"ok", nil, func(t *testing.T, c *config.Config) {
		k := c.Kestrel.K3sSettings()
		if c.Hostname != "myhost" || len(c.Kestrel.Wifi) != 2 || k.Role != "server" || k.Token != "TOKEN_VALUE" || len(k.Taints) != 2 {
			t.Errorf("%+v", c.Kestrel)
		}
	}},
}

// TestRealConfigs runs every config of the real-inputs corpus through
// Parse (what `kestrel config validate` and the boot both use), checks
// the verdict, the errors and the values, and, for the configs that
// apply, writes their write_files into a temporary root and compares the
// bytes and modes with what an independent decoder (Python's PyYAML,
// base64 and gzip) makes of the same file.
func TestRealConfigs(t *testing.T) {
	files, err := realinputs.Files("config", ".yaml", ".yml")
	if err != nil {
		t.Fatal(err)
	}
	top, err := realinputs.Files(".", ".yaml", ".yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range top {
		if !bytes.Contains(f.Data, []byte("kind: Plan")) { // Plans: internal/upgrade/plan
			files = append(files, f)
		}
	}
	seen := map[string]bool{}
	for _, f := range files {
		seen[f.Name] = true
		t.Run(f.Name, func(t *testing.T) {
			v, ok := configVerdicts[f.Name]
			if !ok {
				t.Fatalf("no verdict for %s: add one to configVerdicts", f.Name)
			}
			d, err := config.Parse(f.Name, f.Data)
			var errs config.Errors
			if err != nil && !errors.As(err, &errs) {
				t.Fatalf("error is %T: %v", err, err)
			}
			switch {
			case v.kind == "ok" && err != nil:
				t.Fatalf("refused:\n%v", err)
			case v.kind == "unknown" && (d == nil || err == nil || !errs.OnlyUnknownKeys()):
				t.Fatalf("want only unknown keys and a document, got doc=%v:\n%v", d != nil, err)
			case v.kind == "rejected" && (d != nil || err == nil):
				t.Fatalf("want the source refused, got doc=%v err=%v", d != nil, err)
			}
			for _, want := range v.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("missing error %q in:\n%v", want, err)
				}
			}
			if err != nil && len(v.errs) == 0 {
				t.Errorf("unexpected errors:\n%v", err)
			}
			if d == nil {
				return
			}
			c, err := d.Config()
			if err != nil {
				t.Fatal(err)
			}
			if v.check != nil {
				v.check(t, c)
			}
			checkWrittenBytes(t, f, c)
		})
	}
	for name := range configVerdicts {
		if !seen[name] {
			t.Errorf("verdict for %s, which is not in the corpus", name)
		}
	}
}

// pyWriteFiles is the independent decoder: PyYAML (which decodes
// !!binary to bytes), then the encoding with Python's base64 and gzip. It
// leaves out entries with keys Kestrel does not have, as Kestrel does.
const pyWriteFiles = `
import base64, gzip, json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1], 'rb')) or {}
out = {}
for e in doc.get('write_files') or []:
    if set(e) - {'path', 'content', 'encoding', 'owner', 'permissions'}:
        continue
    c = e.get('content') or ''
    if isinstance(c, str):
        c = c.encode()
    enc = (e.get('encoding') or '').lower()
    if 'b64' in enc or 'base64' in enc:
        c = base64.b64decode(b''.join(c.split()))
    if 'gz' in enc:
        c = gzip.decompress(c)
    out[e['path']] = {'data': base64.b64encode(c).decode(), 'mode': int(e.get('permissions') or '0644', 8)}
json.dump(out, sys.stdout)
`

func checkWrittenBytes(t *testing.T, f realinputs.File, c *config.Config) {
	t.Helper()
	if len(c.WriteFiles) == 0 {
		return
	}
	out, err := exec.Command("python3", "-c", pyWriteFiles, f.Path).Output()
	if err != nil {
		t.Fatalf("independent decoder (python3 with PyYAML: apt-get install python3-yaml): %v", err)
	}
	var want map[string]struct {
		Data []byte
		Mode uint32
	}
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nkestrel:x:1000:1000::/home/kestrel:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nkestrel:x:1000:\n"), 0o644)
	var wf []writefiles.File
	for _, e := range c.WriteFiles {
		wf = append(wf, e.WriteFile())
	}
	err = writefiles.Write(root, wf)
	if f.Name == "config/k3os-issue357-writefiles.yaml" {
		// k3OS's default user was rancher; Kestrel's is kestrel, and the
		// entries are refused whole, naming the owner, before any write.
		if err == nil || !strings.Contains(err.Error(), `/home/rancher/location: owner "rancher"`) {
			t.Fatalf("owner rancher on a node without that user: %v", err)
		}
		if _, serr := os.Stat(filepath.Join(root, "home/rancher/config.sh")); serr == nil {
			t.Fatal("a batch with a bad owner was partly written")
		}
		return
	}
	if err != nil {
		t.Fatalf("write_files: %v", err)
	}
	if len(want) != len(c.WriteFiles) {
		t.Errorf("%d files written, the independent decoder has %d", len(c.WriteFiles), len(want))
	}
	for path, w := range want {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if !bytes.Equal(got, w.Data) {
			t.Errorf("%s: wrote %d bytes %q, want %d bytes %q", path, len(got), trunc(got), len(w.Data), trunc(w.Data))
		}
		fi, _ := os.Stat(filepath.Join(root, path))
		if uint32(fi.Mode().Perm()) != w.Mode&0o777 {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), w.Mode)
		}
	}
}

func trunc(b []byte) string {
	if len(b) > 40 {
		return base64.StdEncoding.EncodeToString(b[:30]) + "..."
	}
	return string(b)
}

// TestRealCmdlines runs the kernel command lines of the corpus.
func TestRealCmdlines(t *testing.T) {
	files, err := realinputs.Files("cmdline", ".cmdline")
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]verdict{
		"cmdline/k3os-issue491-virt-install.cmdline": {"unknown", []string{
			"cmdline/k3os-issue491-virt-install.cmdline:1:86: init_cmd: k3OS read unprefixed keys, Kestrel reads only kestrel.* and k3os.*: this setting is not applied; write k3os.init_cmd=",
		}, func(t *testing.T, c *config.Config) {
			in := c.Kestrel.Install
			if in.ConfigURL != "/config.yaml" || in.Device != "/dev/vda" || !in.Silent || !in.PowerOff || !in.Debug || c.Kestrel.K3sSettings().Role != "server" || c.InitCmd != nil {
				t.Errorf("install %+v init_cmd %q", in, c.InitCmd)
			}
		}},
		"cmdline/k3os-readme-install-table.cmdline": {"ok", nil, func(t *testing.T, c *config.Config) {
			in := c.Kestrel.Install
			if !in.ForceEFI || !in.NoFormat || in.TTY != "ttyS0" || !strings.HasSuffix(in.ISOURL, "k3os-amd64.iso") || !strings.HasPrefix(in.ConfigURL, "https://gist.github.com/") {
				t.Errorf("install %+v", in)
			}
		}},
		"cmdline/k3os-readme-singular-keys.cmdline": {"ok", nil, func(t *testing.T, c *config.Config) {
			if c.Kestrel.Token != "TOKEN" || !reflect.DeepEqual(c.Kestrel.DNSNameservers, []string{"1.1.1.1", "8.8.8.8"}) {
				t.Errorf("token %q dns %q", c.Kestrel.Token, c.Kestrel.DNSNameservers)
			}
		}},
	}
	if len(files) != len(verdicts) {
		t.Errorf("%d command lines in the corpus, %d verdicts", len(files), len(verdicts))
	}
	for _, f := range files {
		t.Run(f.Name, func(t *testing.T) {
			v, ok := verdicts[f.Name]
			if !ok {
				t.Fatalf("no verdict for %s", f.Name)
			}
			d, err := config.ParseCmdline(f.Name, realinputs.CmdlineOf(f.Data))
			var errs config.Errors
			errors.As(err, &errs)
			switch {
			case v.kind == "ok" && err != nil:
				t.Fatalf("refused:\n%v", err)
			case v.kind == "unknown" && (d == nil || !errs.OnlyUnknownKeys() || len(errs) == 0):
				t.Fatalf("want only unknown keys, got doc=%v:\n%v", d != nil, err)
			}
			for _, want := range v.errs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("missing error %q in:\n%v", want, err)
				}
			}
			c, err := d.Config()
			if err != nil {
				t.Fatal(err)
			}
			v.check(t, c)
		})
	}
}
