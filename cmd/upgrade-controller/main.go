// Command upgrade-controller is Kestrel's in-cluster upgrade controller
// for upgrade.cattle.io/v1 Plans (see package upgradectl). It stays thin:
// flags, client config, metrics endpoint, leader election; the logic is in
// internal/upgrade/controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
	// The controller's image has no zoneinfo: without the embedded tz
	// database every spec.window.timeZone but UTC fails to load (SUC
	// issue 342).
	_ "time/tzdata"

	"github.com/kestrel-os/kestrel/internal/buildinfo"
	"github.com/kestrel-os/kestrel/internal/upgrade/controller"
	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rancher/wrangler/v3/pkg/kubeconfig"
	corev1 "k8s.io/api/core/v1"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "upgrade-controller:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("upgrade-controller", flag.ContinueOnError)
	var (
		kubeconfigPath = fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig path (empty: in-cluster)")
		namespace      = fs.String("namespace", envOr("SYSTEM_UPGRADE_CONTROLLER_NAMESPACE", ""), "namespace of Plans and Jobs (empty: all)")
		name           = fs.String("name", envOr("SYSTEM_UPGRADE_CONTROLLER_NAME", "kestrel-upgrade-controller"), "controller name (Job label upgrade.cattle.io/controller)")
		leaseNS        = fs.String("leader-election-namespace", envOr("POD_NAMESPACE", "kestrel-upgrade"), "namespace of the leader-election Lease")
		leaderElect    = fs.Bool("leader-elect", true, "hold a Lease so only one instance acts")
		metricsAddr    = fs.String("metrics-addr", ":8080", "address of /metrics and /healthz (empty: off)")
		poll           = fs.Duration("poll-interval", 15*time.Minute, "how often channels are re-resolved (SUC: SYSTEM_UPGRADE_PLAN_POLLING_INTERVAL)")
		deadline       = fs.Duration("health-deadline", 15*time.Minute, "time after a Kestrel upgrade Job completes for the node to be Ready on the new version")
		settle         = fs.Duration("health-settle", 30*time.Second, "time a rebooted Ready node may still show the old version before it counts as failed")
		jobDeadline    = fs.Int64("job-active-deadline-seconds", job.DefaultActiveDeadlineSeconds, "default Job activeDeadlineSeconds")
		backoff        = fs.Int("job-backoff-limit", int(job.DefaultBackoffLimit), "Job backoffLimit")
		ttl            = fs.Int("job-ttl-seconds-after-finished", int(job.DefaultTTLSecondsAfterFinished), "Job ttlSecondsAfterFinished")
		privileged     = fs.Bool("job-privileged", true, "run the upgrade container privileged")
		pullPolicy     = fs.String("job-image-pull-policy", string(corev1.PullIfNotPresent), "Job image pull policy")
		qps            = fs.Float64("kube-api-qps", 50, "client QPS to the apiserver")
		burst          = fs.Int("kube-api-burst", 100, "client burst to the apiserver")
		version        = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Println(buildinfo.Version)
		return nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := kubeconfig.GetNonInteractiveClientConfig(*kubeconfigPath).ClientConfig()
	if err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(*qps), *burst
	cfg.UserAgent = *name + "/" + buildinfo.Version

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	cfg.Wrap(m.WrapTransport)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		srv := &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
	}

	jo := job.DefaultOptions()
	jo.ControllerName = *name
	jo.ActiveDeadlineSeconds = *jobDeadline
	jo.BackoffLimit = int32(*backoff)
	jo.TTLSecondsAfterFinished = int32(*ttl)
	jo.Privileged = *privileged
	jo.ImagePullPolicy = corev1.PullPolicy(*pullPolicy)
	ctl, err := controller.New(controller.Config{
		RestConfig: cfg, Namespace: *namespace, Job: jo, PollInterval: *poll,
		Health: health.Gate{Deadline: *deadline, Settle: *settle}, Metrics: m, Log: log,
	})
	if err != nil {
		return err
	}
	if !*leaderElect {
		return ctl.Run(ctx)
	}
	id, _ := os.Hostname()
	if p := os.Getenv("POD_NAME"); p != "" {
		id = p
	}
	return controller.RunWithLeaderElection(ctx, cfg, controller.Leader{Namespace: *leaseNS, Name: *name, Identity: id}, ctl.Run)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
