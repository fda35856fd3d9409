package configcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("hostname: a\n"), 0o644)
	os.WriteFile(bad, []byte("hostname: a\nkestrel:\n  modles: [x]\n  timezone: [y]\n"), 0o644)

	code, out, _ := run("validate", good)
	if code != 0 || out != good+": ok\n" {
		t.Errorf("good: %d %q", code, out)
	}
	code, _, errs := run("validate", good, bad)
	want := bad + ":3:3: kestrel.modles: unknown key \"modles\", did you mean \"modules\"?\n" +
		bad + ":4:13: kestrel.timezone: expected a string, got a list\n"
	if code != 1 || errs != want {
		t.Errorf("bad: %d\n%s\nwant\n%s", code, errs, want)
	}
	code, _, errs = run("validate", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing: %d %s", code, errs)
	}
	code, _, errs = run("validate", "--cmdline", "quiet kestrel.hostnme=x")
	if code != 1 || errs != "cmdline:1:7: kestrel.hostnme: unknown key \"hostnme\", did you mean \"hostname\"?\n" {
		t.Errorf("cmdline: %d %q", code, errs)
	}
	if code, _, _ := run("validate"); code != 2 {
		t.Errorf("no args: %d", code)
	}
	if code, _, _ := run("validate", "../../../../config.yaml.example"); code != 0 {
		t.Errorf("example does not validate")
	}
}

func TestShow(t *testing.T) {
	root := t.TempDir()
	esp := filepath.Join(root, "esp")
	os.MkdirAll(esp, 0o755)
	os.MkdirAll(filepath.Join(root, "state/kestrel/config.d"), 0o755)
	cmdline := filepath.Join(root, "cmdline")
	os.WriteFile(cmdline, []byte("console=ttyS0 kestrel.timezone=UTC\n"), 0o644)
	os.WriteFile(filepath.Join(esp, "config.yaml"), []byte("hostname: esp\nkestrel:\n  password: hunter2\n"), 0o644)
	os.WriteFile(filepath.Join(root, "state/kestrel/config.d/10.yaml"), []byte("kestrel:\n  bogus: 1\n"), 0o644)
	cache := filepath.Join(root, "run/ds.json")
	if err := datasource.SaveCache(cache, datasource.Cache{
		Documents: []datasource.Raw{{Name: "nocloud:/dev/sr0/user-data", Data: []byte("run_cmd: [echo hi]\n")}},
		Errors:    []string{"datasource aws: probe: timeout"},
	}); err != nil {
		t.Fatal(err)
	}
	args := []string{"show", "--root", root, "--esp", esp, "--cmdline", cmdline, "--cache", cache}
	code, out, errs := run(args...)
	if code != 0 {
		t.Fatalf("%d %s", code, errs)
	}
	want := "hostname: esp # " + esp + "/config.yaml:1:11\n" +
		"run_cmd:\n" +
		"  - echo hi # nocloud:/dev/sr0/user-data:1:11\n" +
		"kestrel:\n" +
		"  password: <redacted> # " + esp + "/config.yaml:3:13\n" +
		"  timezone: UTC # " + cmdline + ":1:15\n"
	if out != want {
		t.Errorf("show:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errs, "left out: "+root+"/state/kestrel/config.d/10.yaml:2:3: kestrel.bogus: unknown key") || !strings.Contains(errs, "skipped: datasource aws: probe: timeout") {
		t.Errorf("errors: %s", errs)
	}
	_, out, _ = run(append(args, "--values", "--secrets")...)
	if !strings.Contains(out, `kestrel.password  = "hunter2"`) || !strings.Contains(out, "run_cmd[0]") {
		t.Errorf("values:\n%s", out)
	}
}

func TestOtherCommands(t *testing.T) {
	if code, out, _ := run("schema"); code != 0 || !strings.Contains(out, `"$schema"`) {
		t.Errorf("schema %d", code)
	}
	if code, out, _ := run("keys"); code != 0 || !strings.Contains(out, "kestrel.modules") || !strings.Contains(out, "initramfs") {
		t.Errorf("keys %d %s", code, out)
	}
	if code, _, _ := run("frobnicate"); code != 2 {
		t.Errorf("unknown command %d", code)
	}
	if code, _, _ := run(); code != 2 {
		t.Errorf("no command %d", code)
	}
}

// TestShowRedacts: without --secrets, `config show` (YAML and --values)
// hides environment values, URL user info and queries and k3s argument
// values besides passwords and tokens, and keeps enough to read the shape.
func TestShowRedacts(t *testing.T) {
	root := t.TempDir()
	esp := filepath.Join(root, "esp")
	os.MkdirAll(esp, 0o755)
	cfg := `kestrel:
  token: tok-s3cr3t
  environment: {HTTPS_PROXY: "http://proxyuser:proxy-s3cr3t@proxy:3128", K3S_TOKEN: env-s3cr3t}
  config_url: "https://cfguser:cfg-s3cr3t@config.example/node.yaml?token=query-s3cr3t"
  k3s_args: [server, "--token=arg-s3cr3t", --datastore-endpoint, "postgres://u:db-s3cr3t@db/k3s", --disable-agent]
  k3s:
    args: [--agent-token, agent-s3cr3t]
  registries:
    mirrors:
      docker.io: {endpoint: ["https://mirror-s3cr3t@mirror.example"]}
`
	os.WriteFile(filepath.Join(esp, "config.yaml"), []byte(cfg), 0o644)
	args := []string{"show", "--root", root, "--esp", esp, "--cmdline", filepath.Join(root, "none"), "--cache", ""}
	for _, extra := range [][]string{nil, {"--values"}} {
		code, out, errs := run(append(args, extra...)...)
		if code != 0 {
			t.Fatalf("%v: %d %s", extra, code, errs)
		}
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("show %v shows a secret:\n%s", extra, out)
		}
		for _, keep := range []string{
			"https://<redacted>@config.example/node.yaml?<redacted>", "HTTPS_PROXY",
			"server", "--token=<redacted>", "--datastore-endpoint", "--disable-agent", "--agent-token",
			"https://<redacted>@mirror.example",
		} {
			if !strings.Contains(out, keep) {
				t.Errorf("show %v lacks %q:\n%s", extra, keep, out)
			}
		}
	}
	_, out, _ := run(append(args, "--values", "--secrets")...)
	for _, s := range []string{"tok-s3cr3t", "env-s3cr3t", "cfg-s3cr3t", "query-s3cr3t", "arg-s3cr3t", "db-s3cr3t", "agent-s3cr3t"} {
		if !strings.Contains(out, s) {
			t.Errorf("show --secrets lacks %s:\n%s", s, out)
		}
	}
}

// TestValidateHidesURLCredentials: a refused URL is named without its
// user info and query (the message reaches the console and `kestrel status`).
func TestValidateHidesURLCredentials(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(f, []byte("kestrel:\n  config_url: \"ftp://u:pw-s3cr3t@cfg.example/x?token=q-s3cr3t\"\n"), 0o644)
	code, _, errs := run("validate", f)
	if code != 1 || !strings.Contains(errs, "kestrel.config_url") || !strings.Contains(errs, "ftp://<redacted>@cfg.example/x?<redacted>") {
		t.Errorf("validate: %d %s", code, errs)
	}
	if strings.Contains(errs, "s3cr3t") {
		t.Errorf("validate shows a secret: %s", errs)
	}
}

// TestValidateHidesMisplacedSecrets: a secret given where a list or a
// mapping belongs is reported without its value.
func TestValidateHidesMisplacedSecrets(t *testing.T) {
	for _, y := range []string{
		"kestrel:\n  k3s_args: \"--token s3cr3t\"\n",
		"kestrel:\n  environment: \"K3S_TOKEN=s3cr3t\"\n",
		"kestrel:\n  registries:\n    configs:\n      r.example:\n        auth: \"user:s3cr3t\"\n",
		"kestrel:\n  k3s:\n    token: [s3cr3t]\n",
	} {
		f := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(f, []byte(y), 0o644)
		code, _, errs := run("validate", f)
		if code != 1 || !strings.Contains(errs, "expected") {
			t.Errorf("%q: %d %s", y, code, errs)
		}
		if strings.Contains(errs, "s3cr3t") {
			t.Errorf("validate shows a secret: %s", errs)
		}
	}
}

// TestShowFiles previews files before they go onto a node: merged in
// order, secrets masked, stdin as "-", problems on stderr.
func TestShowFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.yaml")
	os.WriteFile(a, []byte("hostname: a\nk3os:\n  token: s3cret\n  datasource: aws\n"), 0o644)
	os.WriteFile(b, []byte("hostname: b\nk3os:\n  fancy: 1\n"), 0o644)

	code, out, errs := run("show", a, b)
	if code != 0 || !strings.Contains(out, "hostname: b # "+b+":1:11") || !strings.Contains(out, "token: <redacted> # "+a+":3:10") ||
		!strings.Contains(out, "- aws # "+a+":4:15") || strings.Contains(out, "s3cret") {
		t.Errorf("show a b: %d\n%s", code, out)
	}
	if want := "left out: " + b + `:3:3: k3os.fancy: unknown key "fancy"`; !strings.HasPrefix(errs, want) {
		t.Errorf("stderr %q, want %s", errs, want)
	}
	code, out, _ = run("show", "--secrets", a)
	if code != 0 || !strings.Contains(out, "token: s3cret") {
		t.Errorf("--secrets: %d\n%s", code, out)
	}
	var o, e bytes.Buffer
	code = Run([]string{"show", "--values", a, "-"}, strings.NewReader("hostname: [bad\n"), &o, &e)
	if code != 1 || !strings.Contains(o.String(), "hostname") || !strings.HasPrefix(e.String(), "skipped: <stdin>:1:") {
		t.Errorf("stdin: %d\n%s\n%s", code, o.String(), e.String())
	}
	code, _, errs = run("show", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(errs, "missing.yaml: no such file") {
		t.Errorf("missing: %d %s", code, errs)
	}
}
