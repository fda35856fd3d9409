package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// env is the package's shared apiserver; nil when the binaries are absent.
var (
	env    *testenv.Env
	envErr error
	runSeq atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunShared(m, func(e *testenv.Env, err error) error {
		env, envErr = e, err
		if e == nil {
			return nil
		}
		return InstallCRD(context.Background(), e.Config)
	}))
}

// cluster is one test's slice of the shared apiserver: its own namespace
// and a label that only its nodes carry.
type cluster struct {
	t      *testing.T
	ctx    context.Context
	kube   kubernetes.Interface
	plans  *plan.Client
	ns     string
	run    string // value of label kestrel.test/run on this test's nodes
	prefix string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if env == nil {
		t.Skipf("skipping: needs a real kube-apiserver and etcd: %v", envErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	id := runSeq.Add(1)
	c := &cluster{t: t, ctx: ctx, ns: fmt.Sprintf("t%d", id), run: fmt.Sprintf("r%d", id), prefix: fmt.Sprintf("t%d-", id)}
	c.kube = kubernetes.NewForConfigOrDie(env.Config)
	var err error
	if c.plans, err = plan.NewClient(env.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return c
}

// selector returns a node selector matching this test's nodes.
func (c *cluster) selector(extra ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"kestrel.test/run": c.run}, MatchExpressions: extra}
}

// nodes creates n Ready nodes on version v with the given extra labels.
func (c *cluster) nodes(n int, v string, extra map[string]string) []string {
	c.t.Helper()
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%snode-%02d", c.prefix, i)
		lbls := map[string]string{"kestrel.test/run": c.run, corev1.LabelHostname: name, health.LabelVersion: v}
		for k, val := range extra {
			lbls[k] = val
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
		created, err := c.kube.CoreV1().Nodes().Create(c.ctx, node, metav1.CreateOptions{})
		if err != nil {
			c.t.Fatalf("create node: %v", err)
		}
		created.Status = corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}},
			NodeInfo:   corev1.NodeSystemInfo{BootID: "boot-0", OSImage: "Kestrel " + v},
		}
		if _, err := c.kube.CoreV1().Nodes().UpdateStatus(c.ctx, created, metav1.UpdateOptions{}); err != nil {
			c.t.Fatalf("node status: %v", err)
		}
		names = append(names, name)
	}
	c.t.Cleanup(func() {
		for _, n := range names {
			_ = c.kube.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	})
	return names
}

// controller starts a controller on this test's namespace; stop it with
// the returned function (also called at cleanup).
func (c *cluster) controller(mod func(*Config)) (stop func()) {
	c.t.Helper()
	cfg := Config{
		RestConfig: env.Config, Namespace: c.ns,
		Health:           health.Gate{Deadline: 20 * time.Second, Settle: 2 * time.Second},
		ChannelRetryBase: 200 * time.Millisecond, ChannelRetryMax: time.Second,
		Log: slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctl, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ctl.Run(ctx); err != nil && ctx.Err() == nil {
			c.t.Errorf("controller: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	c.t.Cleanup(stop)
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// createPlan creates p in the test namespace.
func (c *cluster) createPlan(p *plan.Plan) *plan.Plan {
	c.t.Helper()
	p.Namespace = c.ns
	out, err := c.plans.Create(c.ctx, p)
	if err != nil {
		c.t.Fatalf("create plan: %v", err)
	}
	return out
}

// waitPlan polls the Plan until cond holds.
func (c *cluster) waitPlan(name string, timeout time.Duration, what string, cond func(*plan.Plan) bool) *plan.Plan {
	c.t.Helper()
	var last *plan.Plan
	err := wait.PollUntilContextTimeout(c.ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.plans.Get(ctx, c.ns, name)
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		c.t.Fatalf("plan %s: waiting for %s: %v; status: %+v", name, what, err, last.Status)
	}
	return last
}

func (c *cluster) jobs() []batchv1.Job {
	c.t.Helper()
	l, err := c.kube.BatchV1().Jobs(c.ns).List(c.ctx, metav1.ListOptions{})
	if err != nil {
		c.t.Fatalf("list jobs: %v", err)
	}
	return l.Items
}

func (c *cluster) node(name string) *corev1.Node {
	c.t.Helper()
	n, err := c.kube.CoreV1().Nodes().Get(c.ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatalf("get node: %v", err)
	}
	return n
}

func cond(p *plan.Plan, typ string) string {
	if x := p.Status.Condition(typ); x != nil {
		return string(x.Status) + "/" + x.Reason + "/" + x.Message
	}
	return ""
}

// Behaviour of a simulated node when its upgrade Job runs.
type behaviour int

const (
	upgradeOK  behaviour = iota // job completes, node reboots onto the new version
	rollBack                    // job completes, node reboots, comes back on the old version marked rolled back
	oldVersion                  // job completes, node reboots, comes back on the old version, no mark
	jobFails                    // job fails
	neverBack                   // job completes, node goes NotReady and stays there
	jobOnly                     // job completes, node untouched (SUC plans)
)

// sim plays the kubelet, the job controller and the node-side upgrade:
// for every Job let run (parallelism 1) it completes the Job and reboots
// the node as told. It also measures what the controller did.
type sim struct {
	c        *cluster
	planName string
	version  string
	mu       sync.Mutex
	act      map[string]behaviour
	delay    time.Duration
	handled  map[string]bool
	created  map[string]int // Job ADD events per node
	resumed  []string       // nodes in the order their Jobs were let run
	maxFly   int
	conc     int
	stopped  chan struct{}
	cancel   context.CancelFunc
	paused   atomic.Bool
}

func (c *cluster) sim(planName, version string, def behaviour, delay time.Duration) *sim {
	s := &sim{c: c, planName: planName, version: version, act: map[string]behaviour{}, delay: delay,
		handled: map[string]bool{}, created: map[string]int{}, stopped: make(chan struct{})}
	s.act[""] = def
	ctx, cancel := context.WithCancel(c.ctx)
	s.cancel = cancel
	go s.watchCreates(ctx)
	go s.loop(ctx)
	c.t.Cleanup(s.stop)
	return s
}

func (s *sim) set(node string, b behaviour) { s.mu.Lock(); s.act[node] = b; s.mu.Unlock() }

func (s *sim) stop() {
	s.cancel()
	<-s.stopped
}

// watchCreates counts Job creations per node from a watch, so a Job that
// was deleted and made again counts twice.
func (s *sim) watchCreates(ctx context.Context) {
	seen := map[types.UID]bool{}
	for ctx.Err() == nil {
		w, err := s.c.kube.BatchV1().Jobs(s.c.ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			j, ok := ev.Object.(*batchv1.Job)
			if !ok || ev.Type != watch.Added || seen[j.UID] {
				continue
			}
			seen[j.UID] = true
			s.mu.Lock()
			s.created[j.Labels[plan.LabelNode]]++
			s.mu.Unlock()
		}
	}
}

func (s *sim) loop(ctx context.Context) {
	defer close(s.stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if s.paused.Load() {
			continue
		}
		l, err := s.c.kube.BatchV1().Jobs(s.c.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		nodes, err := s.c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "kestrel.test/run=" + s.c.run})
		if err != nil {
			continue
		}
		byName := map[string]*corev1.Node{}
		for i := range nodes.Items {
			byName[nodes.Items[i].Name] = &nodes.Items[i]
		}
		fly := 0
		for i := range l.Items {
			j := &l.Items[i]
			nodeName := j.Labels[plan.LabelNode]
			n := byName[nodeName]
			pl := j.Labels[plan.LabelPlan]
			if n == nil || n.Labels[plan.LabelPlanName(pl)] == j.Labels[plan.LabelPlanName(pl)] || n.Annotations[FailedPrefix+pl] != "" {
				continue
			}
			fly++
			if job.Paused(j) {
				continue
			}
			s.mu.Lock()
			if s.handled[j.Name] {
				s.mu.Unlock()
				continue
			}
			s.handled[j.Name] = true
			s.resumed = append(s.resumed, nodeName)
			b, ok := s.act[nodeName]
			if !ok {
				b = s.act[""]
			}
			s.mu.Unlock()
			wg.Add(1)
			go func(j batchv1.Job, b behaviour) {
				defer wg.Done()
				s.play(ctx, &j, nodeName, b)
			}(*j, b)
		}
		s.mu.Lock()
		if fly > s.maxFly {
			s.maxFly = fly
		}
		s.mu.Unlock()
	}
}

func (s *sim) play(ctx context.Context, j *batchv1.Job, node string, b behaviour) {
	sleep := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(s.delay):
			return true
		}
	}
	if !sleep() {
		return
	}
	if err := retry(ctx, func() error { return finishJob(ctx, s.c.kube, j, b != jobFails) }); err != nil {
		return
	}
	if b == jobFails || b == jobOnly {
		return
	}
	_ = retry(ctx, func() error { return setNode(ctx, s.c.kube, node, false, "", nil, nil) })
	if b == neverBack || !sleep() {
		return
	}
	switch b {
	case upgradeOK:
		_ = retry(ctx, func() error {
			return setNode(ctx, s.c.kube, node, true, "boot-"+s.version, map[string]string{health.LabelVersion: s.version}, nil)
		})
	case rollBack:
		_ = retry(ctx, func() error {
			return setNode(ctx, s.c.kube, node, true, "boot-rb", nil, map[string]string{health.KeyRolledBackFrom: s.version})
		})
	case oldVersion:
		_ = retry(ctx, func() error { return setNode(ctx, s.c.kube, node, true, "boot-old", nil, nil) })
	}
}

func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finishJob sets a Job's terminal status as the job controller would.
func finishJob(ctx context.Context, kube kubernetes.Interface, j *batchv1.Job, ok bool) error {
	cur, err := kube.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	cur.Status.StartTime = &start
	if ok {
		cur.Status.Succeeded = 1
		cur.Status.CompletionTime = &now
		cur.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now, LastProbeTime: now},
		}
	} else {
		cur.Status.Failed = 1
		cur.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now, LastProbeTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now, LastProbeTime: now},
		}
	}
	_, err = kube.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

// setNode sets Ready, the boot ID (when not empty) and labels/annotations.
func setNode(ctx context.Context, kube kubernetes.Interface, name string, ready bool, bootID string, lbls, anns map[string]string) error {
	n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(lbls) > 0 || len(anns) > 0 {
		for k, v := range lbls {
			n.Labels[k] = v
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		for k, v := range anns {
			n.Annotations[k] = v
		}
		if n, err = kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, LastTransitionTime: metav1.Now()}}
	if bootID != "" {
		n.Status.NodeInfo.BootID = bootID
		if v := lbls[health.LabelVersion]; v != "" {
			n.Status.NodeInfo.OSImage = "Kestrel " + v
		}
	}
	_, err = kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

func (s *sim) stats() (maxFly int, created map[string]int, resumed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := map[string]int{}
	for k, v := range s.created {
		cp[k] = v
	}
	return s.maxFly, cp, append([]string(nil), s.resumed...)
}

var _ = apierrors.IsNotFound
var _ = apiextv1.SchemeGroupVersion
var _ = apiextclient.NewForConfig
