package controller

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRollout rolls a health-gated Kestrel Plan (drain, reboot,
// version check) across simulated nodes with the real controller binary
// running as its own process against a real apiserver, and reports the
// wall time, the API requests the controller sent per node and its peak
// resident memory. Defaults: 1000 nodes, concurrency 50
// (KESTREL_BENCH_NODES, KESTREL_BENCH_CONCURRENCY, KESTREL_BENCH_QPS
// override; QPS defaults to the command's default, 50).
//
//	go test ./internal/upgrade/controller -run '^$' -bench Rollout -benchtime 1x
func BenchmarkRollout(b *testing.B) {
	if env == nil {
		b.Skipf("skipping: needs a real kube-apiserver and etcd: %v", envErr)
	}
	nodes := envInt("KESTREL_BENCH_NODES", 1000)
	conc := envInt("KESTREL_BENCH_CONCURRENCY", 50)
	qps := envInt("KESTREL_BENCH_QPS", 50)
	for i := 0; i < b.N; i++ {
		r := runRollout(b, nodes, conc, qps)
		b.ReportMetric(r.wall.Seconds(), "wall-s")
		b.ReportMetric(r.reqPerNode, "api-req/node")
		b.ReportMetric(float64(r.peakRSS)/(1<<20), "ctl-peak-MB")
		fmt.Printf("upgrade-controller rollout: %d nodes, concurrency %d, client QPS %d: wall %.1fs, %.2f API requests/node (%d total), controller peak RSS %.1f MB (target <= 100 MB), max applying %d, max in flight %d\n",
			nodes, conc, qps, r.wall.Seconds(), r.reqPerNode, r.requests, float64(r.peakRSS)/(1<<20), r.maxApplying, r.maxFly)
		if r.maxApplying > conc || r.maxFly > conc {
			b.Errorf("concurrency %d exceeded: applying %d, in flight %d", conc, r.maxApplying, r.maxFly)
		}
	}
}

type rolloutResult struct {
	wall                time.Duration
	requests            int
	reqPerNode          float64
	peakRSS             int64
	maxApplying, maxFly int
}

func runRollout(b *testing.B, n, conc, qps int) rolloutResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cfg := *env.Config
	kube := kubernetes.NewForConfigOrDie(&cfg)
	pc, err := plan.NewClient(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	id := runSeq.Add(1)
	ns, run := fmt.Sprintf("bench%d", id), fmt.Sprintf("bench%d", id)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer kube.CoreV1().Nodes().DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "kestrel.test/run=" + run})

	// Nodes, created by 16 workers.
	start := time.Now()
	names := make(chan int)
	var wg sync.WaitGroup
	var createErr atomic.Value
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range names {
				name := fmt.Sprintf("%s-node-%04d", run, i)
				node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
					"kestrel.test/run": run, corev1.LabelHostname: name, health.LabelVersion: "v1",
					"kestrel.io/upgrade": "true", "kestrel.io/mode": "disk"}}}
				created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
				if err != nil {
					createErr.Store(err)
					continue
				}
				created.Status = corev1.NodeStatus{
					Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}},
					NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-0", OSImage: "Kestrel v1"},
				}
				if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
					createErr.Store(err)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		names <- i
	}
	close(names)
	wg.Wait()
	if err, _ := createErr.Load().(error); err != nil {
		b.Fatalf("create nodes: %v", err)
	}
	b.Logf("created %d nodes in %s", n, time.Since(start).Round(time.Millisecond))

	// The controller binary, as its own process.
	dir := b.TempDir()
	bin := filepath.Join(dir, "upgrade-controller")
	build := exec.Command("go", "build", "-o", bin, "github.com/kestrel-os/kestrel/cmd/upgrade-controller")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build controller: %v", err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kc); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	ctl := exec.Command(bin, "--kubeconfig", kc, "--namespace", ns, "--leader-elect=false",
		"--metrics-addr", metricsAddr, "--health-deadline", "10m",
		"--kube-api-qps", strconv.Itoa(qps), "--kube-api-burst", strconv.Itoa(2*qps))
	ctl.Stdout, ctl.Stderr = logf, logf
	if err := ctl.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ctl.Process.Kill(); _ = ctl.Wait() }()

	// The nodes' side: every Job let run completes, its node reboots and
	// comes back Ready on v2.
	sim := newBenchSim(ctx, kube, ns)
	defer sim.stop()

	b.ResetTimer()
	start = time.Now()
	if _, err := pc.Create(ctx, &plan.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "kestrel", Namespace: ns, Annotations: map[string]string{AnnotationKestrelPlan: "true"}},
		Spec: plan.PlanSpec{
			Concurrency: int64(conc), Version: "v2",
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kestrel.test/run": run, "kestrel.io/upgrade": "true"}},
			Drain:        &plan.DrainSpec{Force: true},
			Upgrade:      &plan.ContainerSpec{Image: "ghcr.io/kestrel-os/kestrel-upgrade"},
		},
	}); err != nil {
		b.Fatal(err)
	}
	res := rolloutResult{}
	for {
		p, err := pc.Get(ctx, ns, "kestrel")
		if err == nil {
			if len(p.Status.Applying) > res.maxApplying {
				res.maxApplying = len(p.Status.Applying)
			}
			if p.Status.IsTrue(plan.CondComplete) {
				break
			}
		}
		if ctx.Err() != nil {
			b.Fatalf("rollout did not finish: %v", ctx.Err())
		}
		if ctl.ProcessState != nil {
			b.Fatalf("controller exited; see %s", logf.Name())
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.wall = time.Since(start)
	b.StopTimer()
	res.maxFly = int(sim.maxFly.Load())
	res.requests, err = scrapeRequests("http://" + metricsAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	res.reqPerNode = float64(res.requests) / float64(n)
	res.peakRSS = peakRSS(ctl.Process.Pid)
	return res
}

// scrapeRequests sums kestrel_upgrade_api_requests_total.
func scrapeRequests(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "kestrel_upgrade_api_requests_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("parse %q: %w", line, err)
		}
		total += v
	}
	return int(total), sc.Err()
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchSim is the node simulator at scale: informer-driven rather than
// polling.
type benchSim struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	handled map[string]bool
	fly     atomic.Int64
	maxFly  atomic.Int64
}

func newBenchSim(ctx context.Context, kube kubernetes.Interface, ns string) *benchSim {
	ctx, cancel := context.WithCancel(ctx)
	s := &benchSim{cancel: cancel, handled: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns))
	inf := f.Batch().V1().Jobs().Informer()
	onJob := func(obj any) {
		j, ok := obj.(*batchv1.Job)
		if !ok || job.Paused(j) {
			return
		}
		if out, _ := job.OutcomeOf(j); out != job.Running {
			return
		}
		s.mu.Lock()
		if s.handled[j.Name] {
			s.mu.Unlock()
			return
		}
		s.handled[j.Name] = true
		s.mu.Unlock()
		if f := s.fly.Add(1); f > s.maxFly.Load() {
			s.maxFly.Store(f)
		}
		s.wg.Add(1)
		go func(j *batchv1.Job) {
			defer s.wg.Done()
			defer s.fly.Add(-1)
			node := j.Labels[plan.LabelNode]
			pause := func() { time.Sleep(100 * time.Millisecond) }
			pause()
			if retry(ctx, func() error { return finishJob(ctx, kube, j, true) }) != nil {
				return
			}
			_ = retry(ctx, func() error { return setNode(ctx, kube, node, false, "", nil, nil) })
			pause()
			_ = retry(ctx, func() error {
				return setNode(ctx, kube, node, true, "boot-v2", map[string]string{health.LabelVersion: "v2"}, nil)
			})
		}(j.DeepCopy())
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onJob, UpdateFunc: func(_, n any) { onJob(n) }})
	f.Start(ctx.Done())
	return s
}

func (s *benchSim) stop() {
	s.cancel()
	s.wg.Wait()
}
