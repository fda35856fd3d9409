package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
)

// supervisedSystem starts services under a real supervisor.
type supervisedSystem struct {
	*fakeSystem
	sup *supervisor.Supervisor
}

func (s supervisedSystem) StartService(spec supervisor.Spec) error {
	s.fakeSystem.StartService(spec)
	return s.sup.Start(spec)
}

// TestWithStandin runs the whole hook on the host with the TEST STAND-IN
// for k3s (test/k3s-standin) as the binary, under the real supervisor:
// the stand-in is started with the argv, environment and config.yaml the
// config says, answers health, the boot is declared good, and stopping
// the supervisor ends it with SIGTERM.
func TestWithStandin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the k3s stand-in")
	}
	root := fakeRoot(t, false)
	bin := filepath.Join(root, "usr/bin/k3s")
	build := exec.Command("go", "build", "-o", bin, "../../../../test/k3s-standin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the stand-in: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rp := reaper.New(nil)
	go rp.Loop(ctx)
	sup := supervisor.New(supervisor.Config{Reaper: rp, LogDir: filepath.Join(root, layout.LogDir), StopTimeout: 5 * time.Second})
	defer sup.StopAll()
	sys := supervisedSystem{&fakeSystem{modules: make(chan struct{}), version: "1.2.3"}, sup}
	close(sys.modules)

	cfgYAML := fmt.Sprintf(`kestrel:
  environment:
    K3S_STANDIN_ROOT: %s
    K3S_STANDIN_SERVER_ADDR: %s
  k3s:
    node_name: host-test
    args: [--disable=traefik]
    health_timeout: 30s
`, root, addr)
	good := 0
	opt := Options{
		Root:           root,
		Config:         func() *config.Config { return parseConfig(t, cfgYAML) },
		Mount:          func(string, string, string, uintptr, string) error { return nil },
		Swapoff:        func(string) error { return nil },
		OnBootGood:     []func(context.Context) error{func(context.Context) error { good++; return nil }},
		HealthURL:      "https://" + addr + "/readyz",
		HealthInterval: 100 * time.Millisecond,
	}
	plan, err := Prepare(ctx, sys, opt)
	if err != nil {
		t.Fatal(err)
	}
	plan.Run(ctx, sys)

	h, _ := boothealth.Read(filepath.Join(root, layout.BootHealth))
	logs, _ := os.ReadFile(filepath.Join(root, layout.LogDir, "k3s.log"))
	if h == nil || h.State != boothealth.Good || good != 1 {
		t.Fatalf("boot health %v (OnBootGood ran %d times)\n--- k3s.log ---\n%s", h, good, logs)
	}
	var rec struct {
		Argv  []string           `json:"argv"`
		Env   []string           `json:"env"`
		Files map[string]*string `json:"files"`
	}
	data, err := os.ReadFile(filepath.Join(root, "var/lib/rancher/k3s-standin/record.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Argv, []string{bin, "server", "--disable=traefik"}) {
		t.Errorf("argv %q", rec.Argv)
	}
	if !slices.Contains(rec.Env, "K3S_STANDIN_SERVER_ADDR="+addr) {
		t.Errorf("env %q lacks the configured variable", rec.Env)
	}
	if c := rec.Files[k3sconfig.ConfigPath]; c == nil || !strings.Contains(*c, "node-name: host-test\n") || !strings.Contains(*c, "  - kestrel.io/slot=b\n") {
		t.Errorf("config.yaml the stand-in saw: %v", c)
	}

	if err := sup.Stop(ServiceName); err != nil {
		t.Fatal(err)
	}
	events, _ := os.ReadFile(filepath.Join(root, "var/lib/rancher/k3s-standin/events.log"))
	if !strings.Contains(string(events), " stop server ") {
		t.Errorf("the stand-in did not stop on SIGTERM:\n%s", events)
	}
}
