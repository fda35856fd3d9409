package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
)

func parseConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	doc, err := config.Parse("config.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	r, err := config.Merge(doc)
	if err != nil {
		t.Fatal(err)
	}
	return r.Config
}

// TestFromConfig: node configs, in both spellings, and the k3s start they
// give; a conflict between the spellings is an error, not a silent win.
func TestFromConfig(t *testing.T) {
	for _, tc := range []struct {
		name       string
		yaml       string
		argv       []string
		configHas  []string
		env        []string
		registries bool
		err        string
	}{
		{name: "empty config is a server", yaml: "{}", argv: []string{"k3s", "server"},
			configHas: []string{"  - kestrel.io/slot=a", "  - kestrel.io/version=1.2.3"}},
		{name: "kestrel agent", yaml: "kestrel:\n  k3s:\n    server_url: https://10.0.0.1:6443\n    token: t0k\n    args: [--node-ip=10.0.0.5]\n",
			argv: []string{"k3s", "agent", "--node-ip=10.0.0.5"}, configHas: []string{"server: https://10.0.0.1:6443", "token: t0k"}},
		{name: "k3os legacy agent", yaml: "k3os:\n  k3s_args: [agent, --node-ip=10.0.0.5]\n  server_url: https://10.0.0.1:6443\n  token: t0k\n  labels: {region: eu}\n  taints: [\"a=b:NoSchedule\"]\n  environment: {http_proxy: http://p:3128}\n",
			argv: []string{"k3s", "agent", "--node-ip=10.0.0.5"}, configHas: []string{"  - region=eu", "  - a=b:NoSchedule"}, env: []string{"http_proxy=http://p:3128"}},
		{name: "both spellings agree", yaml: "kestrel:\n  server_url: https://10.0.0.1:6443\n  token: t0k\n  k3s:\n    server_url: https://10.0.0.1:6443\n    labels: {zone: a}\n  labels: {rack: \"7\"}\n",
			argv: []string{"k3s", "agent"}, configHas: []string{"  - rack=7", "  - zone=a"}},
		{name: "registries", yaml: "kestrel:\n  registries:\n    mirrors:\n      docker.io: {endpoint: [\"https://m.example\"]}\n    configs:\n      m.example: {auth: {username: u, password: p}, tls: {insecure_skip_verify: true}}\n",
			argv: []string{"k3s", "server"}, registries: true},
		{name: "server URL conflict", yaml: "kestrel:\n  server_url: https://a.example:6443\n  token: x\n  k3s:\n    server_url: https://b.example:6443\n", err: "server URL"},
		{name: "role conflict", yaml: "kestrel:\n  k3s_args: [server]\n  k3s:\n    role: agent\n    server_url: https://a.example:6443\n    token: x\n", err: "role"},
		{name: "label conflict", yaml: "kestrel:\n  labels: {zone: a}\n  k3s:\n    labels: {zone: b}\n", err: "label zone"},
		{name: "agent without token", yaml: "kestrel:\n  k3s:\n    role: agent\n    server_url: https://a.example:6443\n", err: "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := k3sconfig.Translate(FromConfig(parseConfig(t, tc.yaml), "1.2.3", "a"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one about %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out.Argv, tc.argv) {
				t.Errorf("argv %q, want %q", out.Argv, tc.argv)
			}
			for _, l := range tc.configHas {
				if !strings.Contains(string(out.ConfigYAML), l+"\n") {
					t.Errorf("config.yaml lacks %q:\n%s", l, out.ConfigYAML)
				}
			}
			if !slices.Equal(out.Env, tc.env) && !(len(out.Env) == 0 && len(tc.env) == 0) {
				t.Errorf("env %q, want %q", out.Env, tc.env)
			}
			if (out.RegistriesYAML != nil) != tc.registries {
				t.Errorf("registries.yaml:\n%s", out.RegistriesYAML)
			}
		})
	}
}

type fakeSystem struct {
	mu       sync.Mutex
	specs    []supervisor.Spec
	startErr error
	modules  chan struct{}
	warnings []string
	version  string
}

func (f *fakeSystem) StartService(s supervisor.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, s)
	return f.startErr
}
func (f *fakeSystem) WaitModules(ctx context.Context) error {
	select {
	case <-f.modules:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (f *fakeSystem) Version() string { return f.version }
func (f *fakeSystem) Slot() string    { return "b" }
func (f *fakeSystem) Warn(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.warnings = append(f.warnings, fmt.Sprintf(format, args...))
}
func (f *fakeSystem) Logf(string, ...any) {}

// fakeRoot is a node tree: k3s (when withK3s), the sysctls k3s needs,
// /dev/kmsg and /proc/swaps.
func fakeRoot(t *testing.T, withK3s bool) string {
	root := t.TempDir()
	files := map[string]string{
		"proc/sys/net/ipv4/ip_forward":                 "0\n",
		"proc/sys/net/bridge/bridge-nf-call-iptables":  "0\n",
		"proc/sys/net/bridge/bridge-nf-call-ip6tables": "0\n",
		"proc/swaps": "Filename\tType\tSize\tUsed\tPriority\n",
		"dev/kmsg":   "",
		"usr/lib/kestrel/k3s/manifests/controller.yaml":    "kind: Namespace\n",
		"usr/lib/kestrel/k3s/images/k3s-airgap-images.tar": "tar",
	}
	if withK3s {
		files["usr/bin/k3s"] = "#!/bin/true\n"
	}
	for p, c := range files {
		writeFile(t, filepath.Join(root, p), c)
	}
	return root
}

func writeFile(t *testing.T, p, c string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareRun drives the hook's two halves with a fake node and a
// local health endpoint.
func TestPrepareRun(t *testing.T) {
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer healthy.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not yet", 503) }))
	defer sick.Close()

	for _, tc := range []struct {
		name     string
		withK3s  bool
		yaml     string
		url      string
		startErr error
		prepErr  string
		state    boothealth.State
		detail   string
		started  bool
		onGood   int
	}{
		{name: "healthy server", withK3s: true, yaml: "kestrel:\n  environment: {HTTPS_PROXY: http://p:3128}\n", url: healthy.URL,
			state: boothealth.Good, detail: "k3s server healthy", started: true, onGood: 1},
		{name: "never healthy", withK3s: true, yaml: "kestrel:\n  k3s:\n    health_timeout: 300ms\n", url: sick.URL,
			state: boothealth.NotGood, detail: "k3s server not healthy within 300ms", started: true},
		{name: "cannot start", withK3s: true, yaml: "{}", url: healthy.URL, startErr: errors.New("fork: no memory"),
			state: boothealth.NotGood, detail: "fork: no memory", started: true},
		{name: "no k3s in the image", withK3s: false, yaml: "{}", state: boothealth.Good, detail: "no k3s in this image", onGood: 1},
		{name: "refused config", withK3s: true, yaml: "kestrel:\n  k3s:\n    role: agent\n", prepErr: "server URL",
			state: boothealth.NotGood, detail: "an agent needs a server URL"},
		{name: "token vs legacy token", withK3s: true, yaml: "kestrel:\n  token: K10-legacy-s3cr3t\n  k3s:\n    token: K10-new-s3cr3t\n", prepErr: "token differs",
			state: boothealth.NotGood, detail: "token differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.withK3s)
			sys := &fakeSystem{modules: make(chan struct{}), startErr: tc.startErr, version: "1.2.3"}
			close(sys.modules)
			var mounts []string
			good := 0
			opt := Options{
				Root:   root,
				Config: func() *config.Config { return parseConfig(t, tc.yaml) },
				Mount: func(src, dst, fstype string, flags uintptr, data string) error {
					mounts = append(mounts, fmt.Sprintf("%s->%s %#x", src, dst, flags))
					return nil
				},
				Swapoff:        func(string) error { return nil },
				OnBootGood:     []func(context.Context) error{func(context.Context) error { good++; return nil }},
				HealthURL:      tc.url,
				HealthInterval: 50 * time.Millisecond,
			}
			plan, err := Prepare(context.Background(), sys, opt)
			prepErr := err
			if tc.prepErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.prepErr) {
					t.Fatalf("Prepare: %v, want an error about %q", err, tc.prepErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if plan != nil {
				r, _ := boothealth.Read(filepath.Join(root, layout.BootHealth))
				if r == nil || r.State != boothealth.Pending {
					t.Errorf("after Prepare: %+v, want pending", r)
				}
				plan.Run(context.Background(), sys)
			}
			r, err := boothealth.Read(filepath.Join(root, layout.BootHealth))
			if err != nil || r == nil {
				t.Fatalf("no boot health: %v", err)
			}
			if r.State != tc.state || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("boot health %q, want %s with %q", r, tc.state, tc.detail)
			}
			// What the console, `kestrel status` and the record show holds
			// no secret, and the record is root's.
			raw, _ := os.ReadFile(filepath.Join(root, layout.BootHealth))
			for _, shown := range append([]string{string(raw), fmt.Sprint(prepErr)}, sys.warnings...) {
				if strings.Contains(shown, "s3cr3t") {
					t.Errorf("a secret is shown: %s", shown)
				}
			}
			if fi, err := os.Stat(filepath.Join(root, layout.BootHealth)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("boot health file mode %v, %v; want 0600", fi.Mode(), err)
			}
			if good != tc.onGood {
				t.Errorf("OnBootGood ran %d times, want %d", good, tc.onGood)
			}
			if (len(sys.specs) == 1) != tc.started {
				t.Fatalf("started %+v, want started=%v", sys.specs, tc.started)
			}
			if !tc.started {
				return
			}
			sp := sys.specs[0]
			if sp.Name != "k3s" || sp.Path != filepath.Join(root, fetch.RootfsBinary) || !slices.Equal(sp.Args, []string{"server"}) {
				t.Errorf("spec %+v", sp)
			}
			if !slices.Contains(sp.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
				t.Errorf("k3s env %q lacks PATH", sp.Env)
			}
			if strings.Contains(tc.yaml, "HTTPS_PROXY") && !slices.Contains(sp.Env, "HTTPS_PROXY=http://p:3128") {
				t.Errorf("k3s env %q lacks the configured proxy", sp.Env)
			}
			cfg, err := os.ReadFile(filepath.Join(root, k3sconfig.ConfigPath))
			if err != nil || !strings.Contains(string(cfg), "kestrel.io/slot=b") || !strings.Contains(string(cfg), "kestrel.io/version=1.2.3") {
				t.Errorf("config.yaml: %s %v", cfg, err)
			}
			if l, err := os.Readlink(filepath.Join(root, fetch.AgentImagesDir, "k3s-airgap-images.tar")); err != nil || l != fetch.RootfsAirgapDir+"/k3s-airgap-images.tar" {
				t.Errorf("airgap images link %q, %v", l, err)
			}
			if fwd, _ := os.ReadFile(filepath.Join(root, "proc/sys/net/ipv4/ip_forward")); string(fwd) != "1\n" {
				t.Errorf("ip_forward = %q", fwd)
			}
			if len(mounts) != 2 {
				t.Errorf("mounts %q, want the node dir bind and / rshared", mounts)
			}
		})
	}
}

// TestNode: every step runs and every problem is reported.
func TestNode(t *testing.T) {
	root := fakeRoot(t, true)
	writeFile(t, filepath.Join(root, "proc/swaps"), "Filename\tType\tSize\tUsed\tPriority\n/dev/vda5 partition 1024 0 -2\n/swap\\040file file 512 0 -3\n")
	os.Remove(filepath.Join(root, "proc/sys/net/bridge/bridge-nf-call-iptables")) // br_netfilter absent
	os.Remove(filepath.Join(root, "dev/kmsg"))
	var swapped, mounted []string
	errs := Node{Root: root,
		Mount: func(src, dst, fstype string, flags uintptr, data string) error {
			mounted = append(mounted, "/"+strings.TrimPrefix(strings.TrimPrefix(dst, root), "/"))
			return nil
		},
		Swapoff: func(p string) error { swapped = append(swapped, p); return nil },
	}.Prepare()
	if !slices.Equal(swapped, []string{"/dev/vda5", "/swap file"}) {
		t.Errorf("swapoff %q", swapped)
	}
	if !slices.Equal(mounted, []string{NodeDir, "/"}) {
		t.Errorf("mounts %q", mounted)
	}
	if st, err := os.Stat(filepath.Join(root, NodeStateDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("node state dir: %v %v", st, err)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	if len(errs) != 2 || !strings.Contains(all, "bridge-nf-call-iptables") || !strings.Contains(all, "/dev/kmsg") {
		t.Errorf("errors:\n%s\nwant the missing bridge sysctl and /dev/kmsg", all)
	}
}

// TestAirgapLinks: links follow the rootfs; a link left by an older
// release whose image is gone is removed, anything else is left alone.
func TestAirgapLinks(t *testing.T) {
	root := fakeRoot(t, true)
	dst := filepath.Join(root, fetch.AgentImagesDir)
	os.MkdirAll(dst, 0o755)
	os.Symlink(fetch.RootfsAirgapDir+"/old-release.tar", filepath.Join(dst, "old-release.tar"))
	writeFile(t, filepath.Join(dst, "operator-copied.tar"), "mine")
	for i := 0; i < 2; i++ { // a second boot changes nothing
		linked, err := linkAirgapImages(root)
		if err != nil || !slices.Equal(linked, []string{"k3s-airgap-images.tar"}) {
			t.Fatalf("linked %q, %v", linked, err)
		}
	}
	var names []string
	entries, _ := os.ReadDir(dst)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"k3s-airgap-images.tar", "operator-copied.tar"}) {
		t.Errorf("import dir holds %q", names)
	}
}
