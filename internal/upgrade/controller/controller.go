// Package controller is Kestrel's in-cluster upgrade controller: it
// reconciles upgrade.cattle.io/v1 Plans as rancher's system-upgrade-
// controller (SUC) does, so SUC Plans (k3OS's, k3s upgrade Plans) work
// unchanged, and for Kestrel Plans it gates every node on coming back
// healthy and halts the rollout when one does not.
//
// Everything the controller decides is kept in the API, never only in
// memory, so that a restart of the controller or of the apiserver in the
// middle of a rollout neither exceeds the concurrency nor starts a node
// twice:
//   - a node is started by first writing it into status.applying (an
//     optimistic, resourceVersion-checked status update) and only then
//     creating its Job, whose name is derived from plan, node and hash;
//   - the nodes counted against the concurrency are status.applying plus
//     every node with a Job for the current hash that is not finished;
//   - a node is finished when it carries label plan.upgrade.cattle.io/<plan>
//     = hash (done) or annotation failed.upgrade.kestrel.io/<plan> = version
//     (failed: never retried for that version), both written before the
//     node leaves status.applying.
//
// Kestrel Plans are those annotated kestrel.io/upgrade: "true", or whose
// upgrade image's repository is named kestrel-upgrade. For them a node is
// done only once it rebooted, reports the Plan's version and is Ready again
// within the health deadline (package health); a node that fails this
// halts the rollout (condition Halted=True and an event naming the node and
// the reason) until the version changes or the Plan is annotated
// upgrade.kestrel.io/resume: <version> (the failed node still is not
// retried). For those Plans a failed Job fails the node the same way; for
// SUC Plans it sets Complete=False reason JobFailed, as SUC does.
//
// Cordon and drain happen in the controller through the API (eviction,
// honouring PodDisruptionBudgets) while the node's Job is held at
// parallelism 0; the Job then runs.
//
// Limits: the Secrets of the watched namespace are cached (to hash the
// ones Plans mount); with no namespace given that is every Secret in the
// cluster, so the shipped Deployment always names one. One controller
// instance acts at a time (leader election, see
// RunWithLeaderElection); Plans' spec.exclusive is honoured among Plans this
// controller manages; channel results are kept in memory and re-resolved
// after a restart.
package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/channel"
	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/metrics"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Keys the controller writes on nodes and reads on Plans.
const (
	// AnnotationKestrelPlan marks a Plan as a Kestrel upgrade.
	AnnotationKestrelPlan = "kestrel.io/upgrade"
	// KestrelImageName is the repository name of Kestrel's upgrade image.
	KestrelImageName = "kestrel-upgrade"
	// AnnotationResume on a Plan, set to a version, lets a halted rollout
	// of that version continue (the failed nodes stay excluded).
	AnnotationResume = "upgrade.kestrel.io/resume"
	// FailedPrefix + plan name is the node annotation recording the
	// version that failed there.
	FailedPrefix = "failed.upgrade.kestrel.io/"
)

// Config configures a Controller. RestConfig is required.
type Config struct {
	RestConfig *rest.Config
	// Namespace to watch Plans and Jobs in; "" for all.
	Namespace string
	// Job settings; zero value: job.DefaultOptions().
	Job job.Options
	// PollInterval re-resolves channels (SUC: 15 min).
	PollInterval time.Duration
	// ChannelRetryBase and ChannelRetryMax bound the backoff of failed
	// channel resolutions.
	ChannelRetryBase, ChannelRetryMax time.Duration
	// Health is the gate for Kestrel Plans.
	Health health.Gate
	// Resolver resolves channels; nil: default.
	Resolver *channel.Resolver
	// Metrics; nil: unregistered metrics.
	Metrics *metrics.Metrics
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log; nil: slog.Default().
	Log *slog.Logger
	// Workers processing Plans in parallel (each Plan is serial).
	Workers int
	// DrainRetryDelay is how long a drain waits before retrying an
	// eviction a PodDisruptionBudget refused; 0: kubectl's 5 s.
	DrainRetryDelay time.Duration
}

func (c *Config) defaults() {
	if c.Job.ControllerName == "" {
		c.Job = job.DefaultOptions()
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 15 * time.Minute
	}
	if c.ChannelRetryBase <= 0 {
		c.ChannelRetryBase = 5 * time.Second
	}
	if c.ChannelRetryMax <= 0 {
		c.ChannelRetryMax = 5 * time.Minute
	}
	if c.Health.Deadline <= 0 {
		c.Health.Deadline = 15 * time.Minute
	}
	if c.Health.Settle <= 0 {
		c.Health.Settle = 30 * time.Second
	}
	if c.Resolver == nil {
		c.Resolver = &channel.Resolver{}
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New(nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
}

// eventScheme resolves references for events on Plans and Nodes.
var eventScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(plan.AddToScheme(s))
	return s
}()

// Controller reconciles Plans.
type Controller struct {
	cfg    Config
	kube   kubernetes.Interface
	plans  *plan.Client
	queue  workqueue.TypedRateLimitingInterface[string]
	events record.EventRecorder
	bcast  record.EventBroadcaster

	planInf cache.SharedIndexInformer
	nodes   corelisters.NodeLister
	jobs    batchlisters.JobLister
	secrets corelisters.SecretLister
	factory informers.SharedInformerFactory

	runCtx context.Context

	exclusive     sync.Mutex // serialises reconciles of exclusive Plans
	mu            sync.Mutex
	kubeSystemUID string
	channels      map[string]*channelState // by plan key
	drains        map[string]*drainState   // by job name
}

type channelState struct {
	url, version string
	resolvedAt   time.Time
	failures     int
	nextTry      time.Time
	lastErr      error
}

type drainState struct {
	running bool
	err     error
	done    bool
	nextTry time.Time
	tries   int
}

// New builds a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.RestConfig == nil {
		return nil, errors.New("upgradectl: RestConfig is required")
	}
	cfg.defaults()
	kube, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("upgradectl: kubernetes client: %w", err)
	}
	pc, err := plan.NewClient(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("upgradectl: %w", err)
	}
	c := &Controller{
		cfg: cfg, kube: kube, plans: pc,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, time.Minute),
			), workqueue.TypedRateLimitingQueueConfig[string]{Name: "plans"}),
		channels: map[string]*channelState{},
		drains:   map[string]*drainState{},
	}
	c.bcast = record.NewBroadcaster()
	c.events = c.bcast.NewRecorder(eventScheme, corev1.EventSource{Component: cfg.Job.ControllerName})

	c.factory = informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithTransform(slim))
	nodeInf := c.factory.Core().V1().Nodes()
	c.nodes = nodeInf.Lister()
	jobFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTransform(slim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = plan.LabelPlan }))
	jobInf := jobFactory.Batch().V1().Jobs()
	c.jobs = jobInf.Lister()
	c.planInf = cache.NewSharedIndexInformer(pc.ListWatch(cfg.Namespace), &plan.Plan{}, 0, cache.Indexers{})

	enqueuePlan := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := c.planInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueuePlan,
		UpdateFunc: func(_, n any) { enqueuePlan(n) },
		DeleteFunc: func(obj any) {
			if p, ok := obj.(*plan.Plan); ok {
				c.cfg.Metrics.ForgetPlan(p.Namespace, p.Name)
			}
			enqueuePlan(obj)
		},
	}); err != nil {
		return nil, fmt.Errorf("upgradectl: plan handler: %w", err)
	}
	allPlans := func(any) {
		for _, key := range c.planInf.GetStore().ListKeys() {
			c.queue.Add(key)
		}
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: allPlans, UpdateFunc: func(_, n any) { allPlans(n) }, DeleteFunc: allPlans,
	}); err != nil {
		return nil, fmt.Errorf("upgradectl: node handler: %w", err)
	}
	jobPlan := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if j, ok := obj.(*batchv1.Job); ok && j.Labels[plan.LabelPlan] != "" {
			c.queue.Add(j.Namespace + "/" + j.Labels[plan.LabelPlan])
		}
	}
	if _, err := jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: jobPlan, UpdateFunc: func(_, n any) { jobPlan(n) }, DeleteFunc: jobPlan,
	}); err != nil {
		return nil, fmt.Errorf("upgradectl: job handler: %w", err)
	}
	// Secrets a Plan mounts feed its hash: a change re-rolls the Plan, as
	// in SUC. Only the watched namespace's secrets are cached.
	nsFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithNamespace(cfg.Namespace), informers.WithTransform(slim))
	secretInf := nsFactory.Core().V1().Secrets()
	c.secrets = secretInf.Lister()
	secretPlans := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		sec, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		for _, o := range c.planInf.GetStore().List() {
			p := o.(*plan.Plan)
			if p.Namespace != sec.Namespace {
				continue
			}
			for _, s := range p.Spec.Secrets {
				if s.Name == sec.Name {
					c.queue.Add(p.Namespace + "/" + p.Name)
				}
			}
		}
	}
	if _, err := secretInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: secretPlans, UpdateFunc: func(_, n any) { secretPlans(n) }, DeleteFunc: secretPlans,
	}); err != nil {
		return nil, fmt.Errorf("upgradectl: secret handler: %w", err)
	}
	c.factory = &multiFactory{c.factory, []informers.SharedInformerFactory{jobFactory, nsFactory}}
	return c, nil
}

// slim drops what the controller never reads from cached objects
// (managed fields, a node's image list), to keep memory flat with many
// nodes.
func slim(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status.Images = nil
	}
	return obj, nil
}

// multiFactory starts and syncs several informer factories as one.
type multiFactory struct {
	informers.SharedInformerFactory
	others []informers.SharedInformerFactory
}

func (m *multiFactory) Start(stop <-chan struct{}) {
	m.SharedInformerFactory.Start(stop)
	for _, o := range m.others {
		o.Start(stop)
	}
}

// Run starts the informers and workers and blocks until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	c.runCtx = ctx
	c.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	defer c.bcast.Shutdown()
	c.factory.Start(ctx.Done())
	go c.planInf.Run(ctx.Done())
	mf := c.factory.(*multiFactory)
	for _, ok := range mf.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("upgradectl: node cache did not sync: %w", ctx.Err())
		}
	}
	for _, o := range mf.others {
		for typ, ok := range o.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("upgradectl: %v cache did not sync: %w", typ, ctx.Err())
			}
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.planInf.HasSynced) {
		return fmt.Errorf("upgradectl: plan cache did not sync: %w", ctx.Err())
	}
	c.cfg.Log.Info("upgrade controller started", "namespace", c.cfg.Namespace, "workers", c.cfg.Workers)
	var wg sync.WaitGroup
	for i := 0; i < c.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	after, err := c.reconcile(ctx, key)
	switch {
	case err != nil && apierrors.IsConflict(err):
		c.cfg.Metrics.Reconciles.WithLabelValues("conflict").Inc()
		c.queue.AddRateLimited(key)
	case err != nil:
		c.cfg.Metrics.Reconciles.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			c.cfg.Log.Warn("reconcile failed", "plan", key, "err", err)
		}
		c.queue.AddRateLimited(key)
	default:
		c.cfg.Metrics.Reconciles.WithLabelValues("ok").Inc()
		c.queue.Forget(key)
		if after > 0 {
			c.queue.AddAfter(key, after)
		}
	}
	return true
}

// IsKestrelPlan reports whether p upgrades Kestrel (and so is health gated).
func IsKestrelPlan(p *plan.Plan) bool {
	if strings.EqualFold(p.Annotations[AnnotationKestrelPlan], "true") {
		return true
	}
	if p.Spec.Upgrade == nil {
		return false
	}
	img := p.Spec.Upgrade.Image
	if i := strings.IndexAny(img, "@"); i >= 0 {
		img = img[:i]
	}
	last := img[strings.LastIndex(img, "/")+1:]
	if i := strings.Index(last, ":"); i >= 0 {
		last = last[:i]
	}
	return last == KestrelImageName
}

// candidateOrder sorts nodes as SUC does: by sha256 of node UID, plan UID
// and hash, so the order is stable for one rollout.
func candidateOrder(nodes []*corev1.Node, p *plan.Plan, hash string) {
	key := func(n *corev1.Node) string {
		h := sha256.New()
		h.Write([]byte(n.UID))
		h.Write([]byte(p.UID))
		h.Write([]byte(hash))
		return hex.EncodeToString(h.Sum(nil))
	}
	keys := make(map[*corev1.Node]string, len(nodes))
	for _, n := range nodes {
		keys[n] = key(n)
	}
	sort.Slice(nodes, func(i, j int) bool { return keys[nodes[i]] < keys[nodes[j]] })
}

// patchNode applies a JSON merge patch to a node.
func (c *Controller) patchNode(ctx context.Context, name string, patch []byte) error {
	if _, err := c.kube.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch node %s: %w", name, err)
	}
	return nil
}
