package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// command renders argv and environment the way the golden files hold them.
func command(o Output) []byte {
	var b bytes.Buffer
	b.WriteString("# argv\n")
	for _, a := range o.Argv {
		b.WriteString(a + "\n")
	}
	b.WriteString("# env\n")
	for _, e := range o.Env {
		b.WriteString(e + "\n")
	}
	return b.Bytes()
}

// TestGolden translates each testdata/<case>/input.yaml and compares with
// config.yaml, registries.yaml (absent when none) and command.txt next to
// it. Run with -update to rewrite them after a deliberate change.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/input.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, in := range cases {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			var input Input
			if err := dec.Decode(&input); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			out, err := Translate(input)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "config.yaml"), out.ConfigYAML)
			golden(t, filepath.Join(dir, "registries.yaml"), out.RegistriesYAML)
			golden(t, filepath.Join(dir, "command.txt"), command(out))

			// What is written is what was compared.
			root := t.TempDir()
			if err := out.WriteFiles(root); err != nil {
				t.Fatal(err)
			}
			for _, f := range out.Files() {
				got, err := os.ReadFile(filepath.Join(root, f.Path))
				if f.Data == nil {
					if !os.IsNotExist(err) {
						t.Errorf("%s exists, want none", f.Path)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, f.Data) {
					t.Errorf("%s: written %q, %v", f.Path, got, err)
				}
				if fi, _ := os.Stat(filepath.Join(root, f.Path)); fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", f.Path, fi.Mode())
				}
			}
		})
	}
}

// golden compares got with the file at path; nil got means the file must
// not exist.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if got == nil {
			os.Remove(path)
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if got == nil {
		if err == nil {
			t.Errorf("%s exists but no output was produced", path)
		}
		return
	}
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestTranslateErrors(t *testing.T) {
	base := func(mod func(*Input)) Input {
		in := Input{Version: "v1.0.0", Slot: "a"}
		mod(&in)
		return in
	}
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"no version", Input{Slot: "a"}, "version is empty"},
		{"bad slot", Input{Version: "v1", Slot: "c"}, `slot "c"`},
		{"bad role", base(func(i *Input) { i.Role = "master" }), `role "master"`},
		{"agent without server", base(func(i *Input) { i.Role = "agent"; i.Token = "t" }), "needs a server URL"},
		{"agent without token", base(func(i *Input) { i.ServerURL = "https://s:6443" }), "needs a token"},
		{"agent with datastore", base(func(i *Input) {
			i.ServerURL, i.Token, i.DatastoreEndpoint = "https://s:6443", "t", "mysql://x"
		}), "datastore endpoint is a server setting"},
		{"token and token file", base(func(i *Input) { i.Token, i.TokenFile = "t", "/f" }), "both a token and a token file"},
		{"http server url", base(func(i *Input) { i.ServerURL, i.Token = "http://s:6443", "t" }), "must start with https://"},
		{"role conflict with k3s_args", base(func(i *Input) { i.Role = "server"; i.Legacy.K3sArgs = []string{"agent"} }), `role is "server" but the k3os legacy key says "agent"`},
		{"server url conflict", base(func(i *Input) {
			i.ServerURL, i.Legacy.ServerURL, i.Token = "https://a:6443", "https://b:6443", "t"
		}), "server URL"},
		{"token conflict", base(func(i *Input) { i.Token, i.Legacy.Token = "a", "b" }), "token differs"},
		{"bad label key", base(func(i *Input) { i.Labels = map[string]string{"-x": "1"} }), "not a valid label key"},
		{"bad label value", base(func(i *Input) { i.Labels = map[string]string{"x": "a b"} }), "not a valid label value"},
		{"reserved label", base(func(i *Input) { i.Labels = map[string]string{"kestrel.io/slot": "b"} }), "set by kestrel itself"},
		{"reserved legacy label", base(func(i *Input) { i.Legacy.Labels = map[string]string{"kestrel.io/version": "x"} }), "set by kestrel itself"},
		{"label conflict", base(func(i *Input) {
			i.Labels, i.Legacy.Labels = map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
		}), "label zone"},
		{"bad taint", base(func(i *Input) { i.Taints = []string{"key=value"} }), "taint"},
		{"bad taint effect", base(func(i *Input) { i.Legacy.Taints = []string{"k:Sometimes"} }), "taint"},
		{"bad env name", base(func(i *Input) { i.Legacy.Environment = map[string]string{"1X": "y"} }), "not a variable name"},
		{"env conflict", base(func(i *Input) {
			i.Environment, i.Legacy.Environment = map[string]string{"A": "1"}, map[string]string{"A": "2"}
		}), "environment A is set twice, to different values, in environment and k3os.environment"},
		{"mirror endpoint without scheme", base(func(i *Input) {
			i.Registries.Mirrors = map[string]Mirror{"docker.io": {Endpoint: []string{"mirror:5000"}}}
		}), "needs http:// or https://"},
		{"tls cert without key", base(func(i *Input) {
			i.Registries.Configs = map[string]RegistryConfig{"r": {TLS: &RegistryTLS{CertFile: "/c"}}}
		}), "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Translate(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestErrorsHideSecrets: every refused input that carries a secret (a
// token, a datastore endpoint, a registry password, an environment value)
// gives an error that names the key but not the value: the error reaches
// the console, `kestrel status` and the boot-health record.
func TestErrorsHideSecrets(t *testing.T) {
	const secret = "K10-s3cr3t-9f8e7d"
	base := func(mod func(*Input)) Input {
		in := Input{Version: "v1.0.0", Slot: "a"}
		mod(&in)
		return in
	}
	for _, tt := range []struct {
		name string
		in   Input
		want string
	}{
		{"token vs legacy token", base(func(i *Input) { i.Token, i.Legacy.Token = secret, "other" }), "token differs"},
		{"legacy token vs token", base(func(i *Input) { i.Token, i.Legacy.Token = "other", secret }), "token differs"},
		{"environment twice", base(func(i *Input) {
			i.Environment = map[string]string{"K3S_TOKEN": secret}
			i.Legacy.Environment = map[string]string{"K3S_TOKEN": "x" + secret}
		}), "K3S_TOKEN is set twice"},
		{"agent with datastore", base(func(i *Input) {
			i.ServerURL, i.Token, i.DatastoreEndpoint = "https://s:6443", secret, "postgres://u:"+secret+"@db/k3s"
		}), "datastore endpoint is a server setting"},
		{"token and token file", base(func(i *Input) { i.Token, i.TokenFile = secret, "/f" }), "both a token and a token file"},
		{"registry tls with auth", base(func(i *Input) {
			i.Registries.Configs = map[string]RegistryConfig{"r": {
				Auth: &RegistryAuth{Username: "u", Password: secret, Auth: secret, IdentityToken: secret},
				TLS:  &RegistryTLS{CertFile: "/c"},
			}}
		}), "go together"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Translate(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestRoleDerivation(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		role string
		argv string
	}{
		{"default server", Input{}, "server", "k3s server"},
		{"server url means agent", Input{ServerURL: "https://s:6443", Token: "t"}, "agent", "k3s agent"},
		{"joining server", Input{Role: "server", ServerURL: "https://s:6443", Token: "t"}, "server", "k3s server"},
		{"k3s_args role", Input{Legacy: Legacy{K3sArgs: []string{"server", "--cluster-init"}}}, "server", "k3s server --cluster-init"},
		{"k3s_args without role", Input{Legacy: Legacy{K3sArgs: []string{"--disable=traefik"}}}, "server", "k3s server --disable=traefik"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Version, tt.in.Slot = "v1", "a"
			out, err := Translate(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if out.Role != tt.role || strings.Join(out.Argv, " ") != tt.argv {
				t.Errorf("role %s argv %q, want %s %q", out.Role, out.Argv, tt.role, tt.argv)
			}
		})
	}
}

func TestVersionLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                "v1.2.3",
		"v1.2.3+k3s1":           "v1.2.3-k3s1",
		"1.0.0-rc.1+g1a2b":      "1.0.0-rc.1-g1a2b",
		"+x+":                   "x",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
	} {
		if got := VersionLabelValue(in); got != want {
			t.Errorf("VersionLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// Stale registries.yaml from an earlier boot is removed when the config no
// longer has registries (matters when /etc is not regenerated).
func TestWriteFilesRemovesStaleRegistries(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, RegistriesPath)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("old"), 0o600)
	out, err := Translate(Input{Version: "v1", Slot: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := out.WriteFiles(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("stale registries.yaml still there: %v", err)
	}
}

// The ISO's live system runs k3s too: its node carries kestrel.io/slot=live,
// which a Plan selecting slots a and b never matches.
func TestLiveSlot(t *testing.T) {
	out, err := Translate(Input{Version: "v1.0.0", Slot: "live"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out.ConfigYAML), "kestrel.io/slot=live") {
		t.Errorf("config.yaml lacks the live slot label:\n%s", out.ConfigYAML)
	}
}
