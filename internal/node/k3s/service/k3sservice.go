// Package service runs k3s on a Kestrel node, as stage 2's network-up
// hook: it translates the merged node config (internal/k3s/config) into
// /etc/rancher/k3s/config.yaml, registries.yaml and the k3s command line
// and environment, links the shipped airgap images where k3s imports
// them, then, once every kernel module of the node is loaded
// (System.WaitModules, after the node is ready), prepares the node
// environment (Node), starts `k3s server|agent` under the supervisor,
// waits for it to be healthy (internal/node/k3s/health) for the configured time
// (kestrel.k3s.health_timeout, default DefaultHealthTimeout) and declares
// the boot good or not good (internal/node/boot/boothealth). The declaration's OnGood
// listeners are where a slot is marked good.
//
// An image without k3s (/usr/bin/k3s absent) declares its boot good at
// once: there is nothing to wait for. A config k3sconfig refuses declares
// the boot not good without starting k3s.
//
// The upgrade controller's manifests are internal/k3s/manifests' hook, which
// runs before this one.
//
// Limits: the config is read once per boot (a change at run time needs a
// reboot, or a later phase runner that restarts the service); the health
// verdict is given once (see internal/node/boot/boothealth); an agent counts as healthy
// when its kubelet is, not when the server lists its Node as Ready; the
// supervisor's stop timeout (TERM, then KILL) is the same for every
// service.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
	k3shealth "github.com/kestrel-os/kestrel/internal/node/k3s/health"
)

// ServiceName is the supervisor's name for k3s: `kestrel status` lists it
// and `kestrel logs k3s` shows /var/log/k3s.log.
const ServiceName = "k3s"

// DefaultHealthTimeout is the wait for health when the config sets none.
const DefaultHealthTimeout = k3shealth.DefaultTimeout

// Options are what the hook runs with. Paths are under Root ("/" on the
// device).
type Options struct {
	Root string
	// Config returns the merged node config (the phase runner's); when it
	// or its result is nil the local sources are merged here
	// (LoadLocalConfig).
	Config  func() *config.Config
	Mount   mounts.MountFunc
	Swapoff func(path string) error
	Now     func() time.Time
	// OnBootGood runs once the boot is declared good (boothealth.Declarer.OnGood).
	OnBootGood []func(ctx context.Context) error
	// OnBootNotGood runs once the boot is declared not good.
	OnBootNotGood []func(detail string)
	// HealthURL overrides k3shealth's default endpoint for the role (tests).
	HealthURL      string
	HealthInterval time.Duration
}

// System is what the hook needs of the running node (stage2.System in
// the hook, a fake in tests).
type System interface {
	StartService(supervisor.Spec) error
	WaitModules(ctx context.Context) error
	Version() string
	Slot() string
	Warn(format string, args ...any)
	Logf(format string, args ...any)
}

// Hook is the stage 2 network-up hook: Prepare now, the rest in a
// goroutine so the node's readiness does not wait for k3s.
func Hook(opt Options) stage2.Hook {
	return stage2.Hook{Name: "k3s", Run: func(ctx context.Context, sys *stage2.System) error {
		s := stageSystem{sys}
		p, err := Prepare(ctx, s, opt)
		if err != nil || p == nil {
			return err
		}
		go p.Run(ctx, s)
		return nil
	}}
}

// Plan is a prepared k3s start.
type Plan struct {
	opt     Options
	out     k3sconfig.Output
	timeout time.Duration
	health  *boothealth.Declarer
}

// Prepare writes k3s's files and records the boot as pending. It returns
// nil and no error for an image without k3s (boot declared good), and an
// error (boot declared not good) when the config cannot be turned into a
// k3s start.
func Prepare(ctx context.Context, sys System, opt Options) (*Plan, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	p := func(s string) string { return filepath.Join(opt.Root, s) }
	decl := &boothealth.Declarer{Path: p(layout.BootHealth), Now: opt.Now, OnGood: opt.OnBootGood, OnNotGood: opt.OnBootNotGood}
	if _, err := os.Stat(p(fetch.RootfsBinary)); errors.Is(err, os.ErrNotExist) {
		sys.Logf("no k3s in this image (%s): boot good without it", fetch.RootfsBinary)
		return nil, decl.Good(ctx, "no k3s in this image")
	}
	var cfg *config.Config
	if opt.Config != nil {
		cfg = opt.Config()
	}
	if cfg == nil {
		var errs []error
		cfg, errs = LoadLocalConfig(opt.Root)
		for _, err := range errs {
			sys.Warn("config: %v", err)
		}
	}
	fail := func(err error) (*Plan, error) {
		if derr := decl.NotGood(err.Error()); derr != nil {
			sys.Warn("%v", derr)
		}
		return nil, err
	}
	timeout := DefaultHealthTimeout
	if s := cfg.Kestrel.K3s.HealthTimeout; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fail(fmt.Errorf("kestrel.k3s.health_timeout %q is not a positive duration", s))
		}
		timeout = d
	}
	out, err := k3sconfig.Translate(FromConfig(cfg, sys.Version(), sys.Slot()))
	if err != nil {
		return fail(err)
	}
	if err := out.WriteFiles(opt.Root); err != nil {
		return fail(err)
	}
	if _, err := linkAirgapImages(opt.Root); err != nil {
		sys.Warn("k3s %v", err)
	}
	if err := decl.Pending(fmt.Sprintf("k3s %s waits for the node's kernel modules", out.Role), time.Time{}); err != nil {
		sys.Warn("%v", err)
	}
	return &Plan{opt: opt, out: out, timeout: timeout, health: decl}, nil
}

// Role is the k3s role the plan starts.
func (pl *Plan) Role() string { return pl.out.Role }

// Run waits for the kernel modules, prepares the node, starts k3s under
// the supervisor and declares the boot good or not good. It returns when
// the verdict is given (or ctx ends).
func (pl *Plan) Run(ctx context.Context, sys System) {
	opt, role := pl.opt, pl.out.Role
	if err := sys.WaitModules(ctx); err != nil {
		pl.notGood(sys, fmt.Sprintf("k3s %s not started: %v", role, err))
		return
	}
	for _, err := range (Node{Root: opt.Root, Mount: opt.Mount, Swapoff: opt.Swapoff}).Prepare() {
		sys.Warn("k3s node environment: %v", err)
	}
	env := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, pl.out.Env...)
	spec := supervisor.Spec{Name: ServiceName, Path: filepath.Join(opt.Root, fetch.RootfsBinary), Args: pl.out.Argv[1:], Env: env}
	if err := sys.StartService(spec); err != nil {
		pl.notGood(sys, fmt.Sprintf("k3s %s not started: %v", role, err))
		return
	}
	start := opt.Now()
	if err := pl.health.Pending(fmt.Sprintf("k3s %s started, waiting up to %v for it to be healthy", role, pl.timeout), start.Add(pl.timeout)); err != nil {
		sys.Warn("%v", err)
	}
	err := k3shealth.Wait(ctx, k3shealth.Options{
		Role: role, URL: opt.HealthURL, Timeout: pl.timeout, Interval: opt.HealthInterval, Root: opt.Root, Logf: sys.Logf,
	})
	if err != nil {
		pl.notGood(sys, fmt.Sprintf("k3s %s not healthy within %v: %v", role, pl.timeout, err))
		return
	}
	detail := fmt.Sprintf("k3s %s healthy %v after it started", role, opt.Now().Sub(start).Round(100*time.Millisecond))
	if err := pl.health.Good(ctx, detail); err != nil {
		sys.Warn("%v", err)
	}
	sys.Logf("boot good: %s", detail)
}

func (pl *Plan) notGood(sys System, detail string) {
	if err := pl.health.NotGood(detail); err != nil {
		sys.Warn("%v", err)
	}
	sys.Warn("boot NOT good: %s", detail)
}

// LoadLocalConfig merges the node's local config sources (image defaults,
// kernel command line, ESP, state partition; internal/config) as stage 2 sees
// them. It stands in until the phase runner hands over its merged config.
// Skipped sources come back as errors; the result is never nil.
func LoadLocalConfig(root string) (*config.Config, []error) {
	p := func(s string) string { return filepath.Join(root, s) }
	src := config.LoadLocal(config.DefaultLocations(root, p(layout.ESPMount), p("/proc/cmdline")))
	r, err := src.Merge()
	if err != nil {
		return &config.Config{}, append(src.Errors(), err)
	}
	if r.Config == nil {
		return &config.Config{}, r.Errors
	}
	return r.Config, r.Errors
}

// stageSystem adapts stage2.System.
type stageSystem struct{ s *stage2.System }

func (s stageSystem) StartService(spec supervisor.Spec) error {
	return s.s.Supervisor.Start(spec)
}
func (s stageSystem) WaitModules(ctx context.Context) error { return s.s.WaitModules(ctx) }
func (s stageSystem) Version() string                       { return s.s.Version }
func (s stageSystem) Slot() string                          { return s.s.Slot }
func (s stageSystem) Warn(format string, args ...any)       { s.s.Warn(format, args...) }
func (s stageSystem) Logf(format string, args ...any)       { s.s.Logf(format, args...) }
