package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/channel"
	"github.com/kestrel-os/kestrel/internal/upgrade/drain"
	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Condition reasons (SUC's where SUC has one).
const (
	ReasonError       = "Error"
	ReasonVersion     = "Version"
	ReasonChannel     = "Channel"
	ReasonJobFailed   = "JobFailed"
	ReasonDrainFailed = "DrainFailed"
	ReasonHalted      = "Halted"
)

// round collects what one reconcile wants done later.
type round struct{ after time.Duration }

func (r *round) requeue(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	if r.after == 0 || d < r.after {
		r.after = d
	}
}

func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := c.planInf.GetStore().GetByKey(key)
	if err != nil {
		return 0, fmt.Errorf("plan %s from cache: %w", key, err)
	}
	if !exists {
		c.mu.Lock()
		delete(c.channels, key)
		c.mu.Unlock()
		return 0, nil
	}
	orig := obj.(*plan.Plan)
	if orig.Spec.Exclusive {
		// Exclusive Plans decide one at a time, so two cannot pick the
		// same node between a status write and the other's next look.
		c.exclusive.Lock()
		defer c.exclusive.Unlock()
		if o, ok, err := c.planInf.GetStore().GetByKey(key); err == nil && ok {
			orig = o.(*plan.Plan)
		}
	}
	p := orig.DeepCopy()
	st := &p.Status
	now := c.cfg.Now()
	r := &round{}

	secrets, verr := c.validate(ctx, p)
	if verr != nil {
		st.SetCondition(plan.CondValidated, corev1.ConditionFalse, ReasonError, verr.Error(), now)
		return 0, c.writeStatus(ctx, orig, p)
	}
	st.SetCondition(plan.CondValidated, corev1.ConditionTrue, "", "", now)

	latest, rerr := c.resolve(ctx, key, p, now, r)
	switch {
	case rerr != nil:
		st.SetCondition(plan.CondLatestResolved, corev1.ConditionFalse, ReasonError, rerr.Error(), now)
	case p.Spec.Version != "":
		st.SetCondition(plan.CondLatestResolved, corev1.ConditionTrue, ReasonVersion, "", now)
	default:
		st.SetCondition(plan.CondLatestResolved, corev1.ConditionTrue, ReasonChannel, "", now)
	}
	if latest == "" {
		return r.after, c.writeStatus(ctx, orig, p)
	}
	hash, err := plan.LatestHash(p, latest, secrets)
	if err != nil {
		return 0, err
	}
	if st.LatestHash != hash {
		st.Applying = nil // a new rollout; the old hash's Jobs are deleted below
	}
	st.LatestVersion, st.LatestHash = latest, hash

	rs, err := c.survey(p)
	if err != nil {
		return 0, err
	}
	kestrel := IsKestrelPlan(p)

	// Finish what can be finished: durable node writes before the status.
	for _, name := range sortedKeys(rs.inflight) {
		if err := c.advance(ctx, p, rs, name, kestrel, now, r); err != nil {
			return 0, err
		}
	}

	// A node that rolled back from this version, wherever the rollout saw
	// it or not, fails it.
	for _, name := range rs.rolledBack {
		if rs.done[name] || rs.failed[name] != "" {
			continue
		}
		msg := fmt.Sprintf("%s: node %s rolled back from %s", health.ReasonRolledBack, name, latest)
		if err := c.failNode(ctx, p, rs, name, health.ReasonRolledBack, msg); err != nil {
			return 0, err
		}
	}

	halted, haltMsg := false, ""
	if kestrel {
		halted, haltMsg = rs.halted(p, latest)
		if halted {
			st.SetCondition(plan.CondHalted, corev1.ConditionTrue, ReasonHalted, haltMsg, now)
		} else {
			st.SetCondition(plan.CondHalted, corev1.ConditionFalse, "", "", now)
		}
	}

	conc := int(p.Spec.Concurrency)
	open, why := c.mayStart(p, rs, now, r)
	if !halted && open && len(rs.inflight) < conc {
		for _, n := range rs.candidates(p, hash) {
			if len(rs.inflight) >= conc {
				break
			}
			rs.inflight[n.Name] = true
		}
	}

	st.Applying = sortedKeys(rs.inflight)
	pending := len(rs.selected) - len(rs.done) - len(rs.failed) - len(rs.inflight)
	if pending < 0 {
		pending = 0
	}
	c.cfg.Metrics.SetNodes(p.Namespace, p.Name, pending, len(rs.inflight), len(rs.done), len(rs.failed))
	switch {
	case halted:
		st.SetCondition(plan.CondComplete, corev1.ConditionFalse, ReasonHalted, haltMsg, now)
	case rs.jobFailed != "":
		st.SetCondition(plan.CondComplete, corev1.ConditionFalse, ReasonJobFailed, rs.jobFailed, now)
	case rs.drainFailed != "":
		st.SetCondition(plan.CondComplete, corev1.ConditionFalse, ReasonDrainFailed, rs.drainFailed, now)
	case len(rs.inflight) == 0 && pending == 0:
		st.SetCondition(plan.CondComplete, corev1.ConditionTrue, "", "", now)
	case conc == 0:
		st.SetCondition(plan.CondComplete, corev1.ConditionFalse, "", "spec.concurrency is 0: no node is started", now)
	case len(rs.inflight) == 0 && !open:
		st.SetCondition(plan.CondComplete, corev1.ConditionFalse, "", why, now)
	default:
		st.SetCondition(plan.CondComplete, corev1.ConditionFalse, "", "", now)
	}

	// Commit the applying set, then act on it.
	if err := c.writeStatus(ctx, orig, p); err != nil {
		return 0, err
	}
	for _, name := range st.Applying {
		if err := c.start(ctx, key, p, rs, name, now, r); err != nil {
			return 0, err
		}
	}
	for _, j := range rs.stale {
		bg := metav1.DeletePropagationBackground
		err := c.kube.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("delete stale job %s/%s: %w", j.Namespace, j.Name, err)
		}
	}
	if c.cfg.PollInterval > 0 && p.Spec.Channel != "" {
		r.requeue(c.cfg.PollInterval)
	}
	return r.after, nil
}

// validate checks the spec and fetches the secrets that feed the hash.
func (c *Controller) validate(ctx context.Context, p *plan.Plan) (map[string]*corev1.Secret, error) {
	if err := plan.Validate(p); err != nil {
		return nil, err
	}
	secrets := map[string]*corev1.Secret{}
	var errs []error
	for _, s := range p.Spec.Secrets {
		if s.IgnoreUpdates {
			continue
		}
		sec, err := c.secrets.Secrets(p.Namespace).Get(s.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.secrets: %s: %w", s.Name, err))
			continue
		}
		secrets[s.Name] = sec
	}
	return secrets, errors.Join(errs...)
}

// resolve returns the latest version: spec.version, or the channel's
// answer (cached for PollInterval; failures retried with backoff while the
// last known version stays in force).
func (c *Controller) resolve(ctx context.Context, key string, p *plan.Plan, now time.Time, r *round) (string, error) {
	if p.Spec.Version != "" {
		return plan.MungeVersion(p.Spec.Version), nil
	}
	c.mu.Lock()
	cs := c.channels[key]
	if cs == nil || cs.url != p.Spec.Channel {
		cs = &channelState{url: p.Spec.Channel}
		c.channels[key] = cs
	}
	c.mu.Unlock()
	fallback := cs.version
	if fallback == "" {
		fallback = p.Status.LatestVersion
	}
	if cs.version != "" && now.Before(cs.resolvedAt.Add(c.cfg.PollInterval)) {
		r.requeue(cs.resolvedAt.Add(c.cfg.PollInterval).Sub(now))
		return cs.version, nil
	}
	if cs.failures > 0 && now.Before(cs.nextTry) {
		r.requeue(cs.nextTry.Sub(now))
		return fallback, cs.lastErr
	}
	clusterID := c.clusterID(ctx)
	v, err := c.cfg.Resolver.ResolvePlan(ctx, p, clusterID)
	if err != nil {
		cs.failures++
		d := channel.Backoff(cs.failures, c.cfg.ChannelRetryBase, c.cfg.ChannelRetryMax)
		cs.nextTry = now.Add(d)
		cs.lastErr = fmt.Errorf("%w (attempt %d, retrying in %s)", err, cs.failures, d)
		r.requeue(d)
		return fallback, cs.lastErr
	}
	cs.version, cs.resolvedAt, cs.failures, cs.lastErr = v, now, 0, nil
	return v, nil
}

func (c *Controller) clusterID(ctx context.Context) string {
	c.mu.Lock()
	id := c.kubeSystemUID
	c.mu.Unlock()
	if id != "" {
		return id
	}
	ns, err := c.kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		return ""
	}
	c.mu.Lock()
	c.kubeSystemUID = string(ns.UID)
	c.mu.Unlock()
	return string(ns.UID)
}

// survey is where every selected node stands for the current hash.
type survey struct {
	selected    map[string]*corev1.Node
	done        map[string]bool
	failed      map[string]string // node -> reason message
	inflight    map[string]bool
	jobs        map[string]*batchv1.Job // current hash, by node
	stale       []*batchv1.Job
	busy        map[string]bool // nodes running another exclusive plan's job
	lastDone    time.Time
	rolledBack  []string // nodes saying they rolled back from this version, not yet recorded
	jobFailed   string
	drainFailed string
}

func (c *Controller) survey(p *plan.Plan) (*survey, error) {
	st := &p.Status
	sel, err := plan.NodeSelector(p)
	if err != nil {
		return nil, err
	}
	nodes, err := c.nodes.List(sel)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	rs := &survey{
		selected: map[string]*corev1.Node{}, done: map[string]bool{}, failed: map[string]string{},
		inflight: map[string]bool{}, jobs: map[string]*batchv1.Job{}, busy: map[string]bool{},
	}
	planLabel := plan.LabelPlanName(p.Name)
	kestrel := IsKestrelPlan(p)
	for _, n := range nodes {
		switch n.Labels[planLabel] {
		case "disabled":
			continue
		case st.LatestHash:
			rs.done[n.Name] = true
		}
		rs.selected[n.Name] = n
		if rs.done[n.Name] {
			continue
		}
		if n.Annotations[FailedPrefix+p.Name] == st.LatestVersion {
			rs.failed[n.Name] = n.Annotations[FailedReasonPrefix+p.Name]
		} else if kestrel {
			from, ok := n.Annotations[health.KeyRolledBackFrom]
			if !ok {
				from, ok = n.Labels[health.KeyRolledBackFrom]
			}
			if ok && versionMatch(from, st.LatestVersion) {
				rs.rolledBack = append(rs.rolledBack, n.Name)
			}
		}
	}
	jobs, err := c.jobs.Jobs(p.Namespace).List(labels.SelectorFromSet(labels.Set{plan.LabelPlan: p.Name}))
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	for _, j := range jobs {
		node := j.Labels[plan.LabelNode]
		if j.Labels[planLabel] != st.LatestHash {
			rs.stale = append(rs.stale, j)
			continue
		}
		rs.jobs[node] = j
		if out, _ := job.OutcomeOf(j); out == job.Complete && j.Status.CompletionTime != nil && j.Status.CompletionTime.After(rs.lastDone) {
			rs.lastDone = j.Status.CompletionTime.Time
		}
	}
	for _, name := range st.Applying {
		if _, ok := rs.selected[name]; ok && !rs.done[name] && rs.failed[name] == "" {
			rs.inflight[name] = true
		}
	}
	for name := range rs.jobs {
		if _, ok := rs.selected[name]; ok && !rs.done[name] && rs.failed[name] == "" {
			rs.inflight[name] = true
		}
	}
	if p.Spec.Exclusive {
		// Other exclusive Plans' applying nodes (their status is written
		// before their Jobs exist) and their unfinished Jobs.
		for _, obj := range c.planInf.GetStore().List() {
			o := obj.(*plan.Plan)
			if o.Spec.Exclusive && (o.Namespace != p.Namespace || o.Name != p.Name) {
				for _, n := range o.Status.Applying {
					rs.busy[n] = true
				}
			}
		}
		all, err := c.jobs.List(labels.SelectorFromSet(labels.Set{job.LabelExclusive: "true"}))
		if err == nil {
			for _, j := range all {
				if j.Labels[plan.LabelPlan] == p.Name && j.Namespace == p.Namespace {
					continue
				}
				if out, _ := job.OutcomeOf(j); out == job.Running {
					rs.busy[j.Labels[plan.LabelNode]] = true
				}
			}
		}
	}
	return rs, nil
}

// FailedReasonPrefix + plan name is the node annotation saying why.
const FailedReasonPrefix = "failed-reason.upgrade.kestrel.io/"

// versionMatch: a rolled-back-from value names the version (or is empty).
func versionMatch(from, version string) bool {
	return from == "" || health.SameVersion(from, version)
}

func (rs *survey) halted(p *plan.Plan, latest string) (bool, string) {
	if len(rs.failed) == 0 || p.Annotations[AnnotationResume] == latest {
		return false, ""
	}
	names := sortedKeys(boolSet(rs.failed))
	msg := fmt.Sprintf("rollout of %s halted: %s", latest, rs.failed[names[0]])
	if len(names) > 1 {
		msg += fmt.Sprintf(" (and %d more: %s)", len(names)-1, strings.Join(names[1:], ", "))
	}
	return true, msg
}

// candidates are the selected nodes not yet started, in SUC's order.
func (rs *survey) candidates(p *plan.Plan, hash string) []*corev1.Node {
	var out []*corev1.Node
	for name, n := range rs.selected {
		if rs.done[name] || rs.failed[name] != "" || rs.inflight[name] || rs.busy[name] {
			continue
		}
		out = append(out, n)
	}
	candidateOrder(out, p, hash)
	return out
}

// mayStart reports whether new nodes may start now (window, delay).
func (c *Controller) mayStart(p *plan.Plan, rs *survey, now time.Time, r *round) (bool, string) {
	if w := p.Spec.Window; w != nil {
		win, err := plan.ParseWindow(w)
		if err != nil {
			return false, err.Error()
		}
		if !win.Contains(now) {
			if next := win.NextOpen(now); !next.IsZero() {
				r.requeue(next.Sub(now))
			}
			return false, "waiting for spec.window"
		}
	}
	if d := p.Spec.PostCompleteDelay; d != nil && d.Duration > 0 && !rs.lastDone.IsZero() {
		if until := rs.lastDone.Add(d.Duration); now.Before(until) {
			r.requeue(until.Sub(now))
			return false, "waiting for spec.postCompleteDelay"
		}
	}
	return true, ""
}

// advance moves an in-flight node forward from what its Job and the node
// itself say; done and failed nodes leave rs.inflight.
func (c *Controller) advance(ctx context.Context, p *plan.Plan, rs *survey, name string, kestrel bool, now time.Time, r *round) error {
	j := rs.jobs[name]
	if j == nil || job.Paused(j) {
		return nil // started (or resumed) after the status is written
	}
	out, msg := job.OutcomeOf(j)
	switch out {
	case job.Running:
		return nil
	case job.Failed:
		if !kestrel {
			rs.jobFailed = fmt.Sprintf("job %s for node %s failed: %s", j.Name, name, msg)
			return nil
		}
		return c.failNode(ctx, p, rs, name, ReasonJobFailed, fmt.Sprintf("%s: upgrade job %s on node %s failed: %s", ReasonJobFailed, j.Name, name, msg))
	}
	if !kestrel {
		return c.completeNode(ctx, p, rs, name)
	}
	done := now
	if j.Status.CompletionTime != nil {
		done = j.Status.CompletionTime.Time
	}
	res := c.cfg.Health.Evaluate(rs.selected[name], p.Status.LatestVersion, j.Annotations[job.AnnotationBootID], done, now)
	switch res.Verdict {
	case health.Healthy:
		return c.completeNode(ctx, p, rs, name)
	case health.Failed:
		return c.failNode(ctx, p, rs, name, res.Reason, res.Reason+": "+res.Message)
	default:
		r.requeue(res.RecheckAt.Sub(now))
		return nil
	}
}

// completeNode labels the node with the hash and the post-complete labels
// and uncordons it when the Plan cordoned it.
func (c *Controller) completeNode(ctx context.Context, p *plan.Plan, rs *survey, name string) error {
	lbls := map[string]string{plan.LabelPlanName(p.Name): p.Status.LatestHash}
	for k, v := range p.Spec.NodeLabels() {
		lbls[k] = plan.ExpandLabel(v, &p.Status)
	}
	if err := c.finishNode(ctx, p, name, "labels", lbls); err != nil {
		return err
	}
	delete(rs.inflight, name)
	rs.done[name] = true
	c.cfg.Log.Info("node upgraded", "plan", p.Namespace+"/"+p.Name, "node", name, "version", p.Status.LatestVersion)
	return nil
}

// failNode records on the node that this version failed there (so it is
// never retried), says so in events, and takes it out of the rollout.
func (c *Controller) failNode(ctx context.Context, p *plan.Plan, rs *survey, name, reason, msg string) error {
	if err := c.finishNode(ctx, p, name, "annotations", map[string]string{
		FailedPrefix + p.Name:       p.Status.LatestVersion,
		FailedReasonPrefix + p.Name: msg,
	}); err != nil {
		return err
	}
	delete(rs.inflight, name)
	rs.failed[name] = msg
	c.cfg.Metrics.NodesFailed.WithLabelValues(p.Namespace, p.Name, reason).Inc()
	c.events.Event(p, corev1.EventTypeWarning, reason, msg+"; rollout halted")
	if n := rs.selected[name]; n != nil {
		c.events.Event(n, corev1.EventTypeWarning, reason, msg)
	}
	c.cfg.Log.Warn("node failed upgrade; rollout halted", "plan", p.Namespace+"/"+p.Name, "node", name, "reason", reason, "detail", msg)
	return nil
}

// finishNode writes the node's outcome (metadata field "labels" or
// "annotations") and, when the Plan cordoned the node, uncordons it, in one
// merge patch.
func (c *Controller) finishNode(ctx context.Context, p *plan.Plan, name, field string, kv map[string]string) error {
	patch := map[string]any{"metadata": map[string]any{field: kv}}
	if p.Spec.CordonRequested() {
		patch["spec"] = map[string]any{"unschedulable": false}
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("node %s patch: %w", name, err)
	}
	return c.patchNode(ctx, name, b)
}

// start makes sure an applying node has its Job, cordons or drains the
// node while the Job is paused, then lets the Job run.
func (c *Controller) start(ctx context.Context, key string, p *plan.Plan, rs *survey, name string, now time.Time, r *round) error {
	n := rs.selected[name]
	if n == nil {
		return nil
	}
	j := rs.jobs[name]
	if j == nil {
		want := job.New(p, n, c.cfg.Job)
		created, err := c.kube.BatchV1().Jobs(p.Namespace).Create(ctx, want, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
			created, err = c.kube.BatchV1().Jobs(p.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get job %s/%s: %w", p.Namespace, want.Name, err)
			}
		case err != nil:
			return fmt.Errorf("create job for node %s: %w", name, err)
		default:
			c.cfg.Metrics.JobsCreated.WithLabelValues(p.Namespace, p.Name).Inc()
		}
		j = created
	}
	if !job.Paused(j) {
		c.mu.Lock()
		delete(c.drains, j.Name)
		c.mu.Unlock()
		return nil
	}
	switch {
	case p.Spec.Drain != nil:
		if !c.drained(ctx, key, p, j, name, now, r, rs) {
			return nil
		}
	case p.Spec.CordonRequested():
		if err := drain.Cordon(ctx, c.kube, name); err != nil {
			return err
		}
	}
	if _, err := c.kube.BatchV1().Jobs(j.Namespace).Patch(ctx, j.Name, types.MergePatchType,
		[]byte(`{"spec":{"parallelism":1}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("resume job %s/%s: %w", j.Namespace, j.Name, err)
	}
	return nil
}

// drained reports whether the node's drain finished; it starts or retries
// the drain in the background otherwise.
func (c *Controller) drained(ctx context.Context, key string, p *plan.Plan, j *batchv1.Job, node string, now time.Time, r *round, rs *survey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := c.drains[j.Name]
	if ds == nil {
		ds = &drainState{}
		c.drains[j.Name] = ds
	}
	switch {
	case ds.done:
		return true
	case ds.running:
		return false
	case ds.err != nil && now.Before(ds.nextTry):
		rs.drainFailed = ds.err.Error()
		r.requeue(ds.nextTry.Sub(now))
		return false
	}
	ds.running = true
	spec := p.Spec.Drain.DeepCopyDrain()
	runCtx := c.runCtx
	go func() {
		err := drain.Drain(runCtx, c.kube, node, spec, drain.Options{
			Log: c.cfg.Log.With("plan", key), RetryDelay: c.cfg.DrainRetryDelay})
		c.mu.Lock()
		ds.running = false
		if err == nil {
			ds.done, ds.err = true, nil
		} else {
			ds.tries++
			ds.err = err
			ds.nextTry = c.cfg.Now().Add(channel.Backoff(ds.tries, 5*time.Second, 2*time.Minute))
			c.cfg.Log.Warn("drain failed", "plan", key, "node", node, "err", err)
		}
		c.mu.Unlock()
		c.queue.Add(key)
	}()
	return false
}

// writeStatus updates the Plan's status when it changed, against the
// resourceVersion it was read at (a Conflict sends the Plan round again).
func (c *Controller) writeStatus(ctx context.Context, orig, p *plan.Plan) error {
	if reflect.DeepEqual(orig.Status, p.Status) {
		return nil
	}
	updated, err := c.plans.UpdateStatus(ctx, p)
	if err != nil {
		return err
	}
	// Let the next round see our own write even before the watch does.
	_ = c.planInf.GetStore().Update(updated)
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func boolSet(m map[string]string) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}
