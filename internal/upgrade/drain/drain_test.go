package drain

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// env is the package's shared apiserver; nil when the binaries are absent.
var (
	env    *testenv.Env
	envErr error
	seq    atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunShared(m, func(e *testenv.Env, err error) error {
		env, envErr = e, err
		return nil
	}))
}

func bp(b bool) *bool { return &b }

func drainTimeout(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }

// Every field of the Plan's DrainSpec lands on the Helper field SUC's
// kubectl flag sets.
func TestHelperMapsEveryField(t *testing.T) {
	// The DrainSpec fields this table covers; a field added to DrainSpec
	// fails here until it is mapped.
	covered := map[string]bool{"Timeout": true, "GracePeriod": true, "DeleteLocalData": true, "DeleteEmptydirData": true,
		"IgnoreDaemonSets": true, "Force": true, "DisableEviction": true, "SkipWaitForDeleteTimeout": true, "PodSelector": true}
	st := reflect.TypeOf(plan.DrainSpec{})
	for i := 0; i < st.NumField(); i++ {
		if !covered[st.Field(i).Name] {
			t.Errorf("DrainSpec.%s is not mapped onto drain.Helper", st.Field(i).Name)
		}
	}
	grace := int32(30)
	type mapped struct {
		Timeout                         time.Duration
		GracePeriodSeconds              int
		DeleteEmptyDirData              bool
		IgnoreAllDaemonSets             bool
		Force                           bool
		DisableEviction                 bool
		SkipWaitForDeleteTimeoutSeconds int
		PodSelector                     string
	}
	// What kubectl gets from SUC for an empty drain: --ignore-daemonsets
	// --delete-emptydir-data, the pod's own grace period, no timeout.
	def := mapped{GracePeriodSeconds: -1, DeleteEmptyDirData: true, IgnoreAllDaemonSets: true, PodSelector: "!upgrade.cattle.io/controller"}
	with := func(f func(*mapped)) mapped { m := def; f(&m); return m }
	tests := []struct {
		name string
		spec *plan.DrainSpec
		want mapped
	}{
		{"nil spec", nil, def},
		{"empty spec", &plan.DrainSpec{}, def},
		{"timeout string", &plan.DrainSpec{Timeout: drainTimeout("90s")}, with(func(m *mapped) { m.Timeout = 90 * time.Second })},
		{"timeout integer is nanoseconds", &plan.DrainSpec{Timeout: func() *intstr.IntOrString { v := intstr.FromInt32(1e9); return &v }()},
			with(func(m *mapped) { m.Timeout = time.Second })},
		{"gracePeriod", &plan.DrainSpec{GracePeriod: &grace}, with(func(m *mapped) { m.GracePeriodSeconds = 30 })},
		{"deleteLocalData false", &plan.DrainSpec{DeleteLocalData: bp(false)}, with(func(m *mapped) { m.DeleteEmptyDirData = false })},
		{"deleteEmptydirData false", &plan.DrainSpec{DeleteEmptydirData: bp(false)}, with(func(m *mapped) { m.DeleteEmptyDirData = false })},
		{"deleteEmptydirData true", &plan.DrainSpec{DeleteEmptydirData: bp(true)}, def},
		{"ignoreDaemonSets false", &plan.DrainSpec{IgnoreDaemonSets: bp(false)}, with(func(m *mapped) { m.IgnoreAllDaemonSets = false })},
		{"force", &plan.DrainSpec{Force: true}, with(func(m *mapped) { m.Force = true })},
		{"disableEviction", &plan.DrainSpec{DisableEviction: true}, with(func(m *mapped) { m.DisableEviction = true })},
		{"skipWaitForDeleteTimeout", &plan.DrainSpec{SkipWaitForDeleteTimeout: 60}, with(func(m *mapped) { m.SkipWaitForDeleteTimeoutSeconds = 60 })},
		{"podSelector joins the upgrade-pod exclusion", &plan.DrainSpec{PodSelector: &metav1.LabelSelector{
			MatchLabels:      map[string]string{"app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}}},
			with(func(m *mapped) { m.PodSelector = "app=web,tier notin (db),!upgrade.cattle.io/controller" })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := newHelper(context.Background(), nil, "n", tc.spec, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := mapped{h.Timeout, h.GracePeriodSeconds, h.DeleteEmptyDirData, h.IgnoreAllDaemonSets, h.Force,
				h.DisableEviction, h.SkipWaitForDeleteTimeoutSeconds, h.PodSelector}
			if got != tc.want {
				t.Errorf("helper = %+v\nwant     %+v", got, tc.want)
			}
			if h.EvictErrorRetryDelay != DefaultRetryDelay {
				t.Errorf("EvictErrorRetryDelay = %v, want kubectl's %v", h.EvictErrorRetryDelay, DefaultRetryDelay)
			}
		})
	}
}

// A spec the library cannot take is refused with the Plan key named.
func TestHelperRejects(t *testing.T) {
	tests := []struct {
		name   string
		spec   *plan.DrainSpec
		errHas string
	}{
		{"bad timeout", &plan.DrainSpec{Timeout: drainTimeout("soon")}, "spec.drain.timeout"},
		{"bad selector operator", &plan.DrainSpec{PodSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}}, "spec.drain.podSelector"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Drain(context.Background(), nil, "n", tc.spec, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v, want it to name %s", err, tc.errHas)
			}
		})
	}
}

// fixture is one test's node and namespace on the shared apiserver, and
// the log the drain writes.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	cs   kubernetes.Interface
	ns   string
	node string
	log  *logBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if env == nil {
		t.Skipf("skipping: needs a real kube-apiserver and etcd: %v", envErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	id := seq.Add(1)
	f := &fixture{t: t, ctx: ctx, cs: kubernetes.NewForConfigOrDie(env.Config),
		ns: fmt.Sprintf("d%d", id), node: fmt.Sprintf("drain-node-%d", id), log: &logBuffer{t: t}}
	if _, err := f.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: f.node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// opts logs into the fixture's buffer and retries blocked evictions fast.
func (f *fixture) opts() Options {
	return Options{Log: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})), RetryDelay: 100 * time.Millisecond}
}

type podOpt func(*corev1.Pod)

func owner(kind string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: "owner",
			UID: "00000000-0000-0000-0000-000000000001", Controller: bp(true)}}
	}
}

func label(k, v string) podOpt { return func(p *corev1.Pod) { p.Labels[k] = v } }

func grace(s int64) podOpt { return func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = &s } }

func finalizer(p *corev1.Pod) { p.Finalizers = append(p.Finalizers, "kestrel.test/hold") }

func emptyDir(p *corev1.Pod) {
	p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
}

// pod creates a pod bound to the fixture's node, Running and Ready as a
// kubelet would report it (the eviction API lets Pending pods go
// regardless of any budget), with no grace period unless told.
func (f *fixture) pod(name string, opts ...podOpt) {
	f.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: f.node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	grace(0)(p)
	for _, o := range opts {
		o(p)
	}
	created, err := f.cs.CoreV1().Pods(f.ns).Create(f.ctx, p, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := f.cs.CoreV1().Pods(f.ns).UpdateStatus(f.ctx, created, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if len(p.Finalizers) > 0 {
		f.t.Cleanup(func() {
			_, _ = f.cs.CoreV1().Pods(f.ns).Patch(context.Background(), name, types.MergePatchType,
				[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		})
	}
}

// daemonSet creates the DaemonSet "owner" that owner("DaemonSet") pods
// name: kubectl looks it up, and would delete an orphan's pods under force.
func (f *fixture) daemonSet() {
	f.t.Helper()
	lbls := map[string]string{"app": "ds"}
	if _, err := f.cs.AppsV1().DaemonSets(f.ns).Create(f.ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "owner"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// get returns the pod, or nil when it is gone.
func (f *fixture) get(name string) *corev1.Pod {
	f.t.Helper()
	p, err := f.cs.CoreV1().Pods(f.ns).Get(f.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// drainAsync runs Drain in the background; its error arrives on the channel.
func (f *fixture) drainAsync(spec *plan.DrainSpec) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Drain(f.ctx, f.cs, f.node, spec, f.opts()) }()
	return done
}

func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	if err := wait.PollUntilContextTimeout(f.ctx, 50*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		f.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// logBuffer collects the drain's log for tests to wait on, and shows it
// in the test's output.
type logBuffer struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func (l *logBuffer) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

// Which pods a drain takes, leaves or refuses.
func TestDrain(t *testing.T) {
	type pod struct {
		name string
		opts []podOpt
	}
	tests := []struct {
		name   string
		spec   *plan.DrainSpec
		pods   []pod
		gone   []string
		kept   []string
		errHas string
	}{
		{"managed pods evicted, DaemonSet and upgrade pods kept", nil,
			[]pod{{"rs", []podOpt{owner("ReplicaSet")}}, {"ds", []podOpt{owner("DaemonSet")}},
				{"up", []podOpt{owner("Job"), label(plan.LabelController, "kestrel-upgrade-controller")}}},
			[]string{"rs"}, []string{"ds", "up"}, ""},
		{"unmanaged pod needs force", &plan.DrainSpec{},
			[]pod{{"bare", nil}}, nil, []string{"bare"}, "spec.drain.force"},
		{"force takes unmanaged pods", &plan.DrainSpec{Force: true},
			[]pod{{"bare", nil}}, []string{"bare"}, nil, ""},
		{"emptyDir refused when deleteEmptydirData is false", &plan.DrainSpec{DeleteEmptydirData: bp(false)},
			[]pod{{"cache", []podOpt{owner("ReplicaSet"), emptyDir}}}, nil, []string{"cache"}, "spec.drain.deleteEmptydirData"},
		{"emptyDir taken by default, as SUC does", nil,
			[]pod{{"cache", []podOpt{owner("ReplicaSet"), emptyDir}}}, []string{"cache"}, nil, ""},
		{"DaemonSet pods refused when not ignored", &plan.DrainSpec{IgnoreDaemonSets: bp(false)},
			[]pod{{"ds", []podOpt{owner("DaemonSet")}}}, nil, []string{"ds"}, "spec.drain.ignoreDaemonSets"},
		{"podSelector limits the drain", &plan.DrainSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
			[]pod{{"web", []podOpt{owner("ReplicaSet"), label("app", "web")}}, {"db", []podOpt{owner("ReplicaSet"), label("app", "db")}}},
			[]string{"web"}, []string{"db"}, ""},
		{"disableEviction deletes", &plan.DrainSpec{DisableEviction: true},
			[]pod{{"rs", []podOpt{owner("ReplicaSet")}}}, []string{"rs"}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.daemonSet()
			for _, p := range tc.pods {
				f.pod(p.name, p.opts...)
			}
			err := Drain(f.ctx, f.cs, f.node, tc.spec, f.opts())
			if tc.errHas == "" && err != nil {
				t.Fatalf("Drain: %v", err)
			}
			if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Fatalf("Drain err = %v, want %q", err, tc.errHas)
			}
			n, err := f.cs.CoreV1().Nodes().Get(f.ctx, f.node, metav1.GetOptions{})
			if err != nil || !n.Spec.Unschedulable {
				t.Errorf("node not cordoned (%v)", err)
			}
			for _, name := range tc.gone {
				if p := f.get(name); p != nil {
					t.Errorf("pod %s still there", name)
				}
			}
			for _, name := range tc.kept {
				if p := f.get(name); p == nil || p.DeletionTimestamp != nil {
					t.Errorf("pod %s gone or going", name)
				}
			}
		})
	}
}

// Defect 1: spec.drain.skipWaitForDeleteTimeout is honoured. A pod that a
// finalizer holds in Terminating blocks the drain until its timeout, but
// not once it has been terminating longer than skipWaitForDeleteTimeout.
func TestSkipWaitForDeleteTimeout(t *testing.T) {
	t.Run("without it the stuck pod blocks until the timeout", func(t *testing.T) {
		f := newFixture(t)
		f.pod("stuck", owner("ReplicaSet"), finalizer)
		err := Drain(f.ctx, f.cs, f.node, &plan.DrainSpec{Timeout: drainTimeout("3s")}, f.opts())
		if err == nil || !strings.Contains(err.Error(), `"stuck"`) {
			t.Fatalf("Drain err = %v, want the stuck pod named", err)
		}
	})
	t.Run("with it the stuck pod is skipped", func(t *testing.T) {
		f := newFixture(t)
		f.pod("stuck", owner("ReplicaSet"), finalizer)
		f.pod("web", owner("ReplicaSet"))
		err := Drain(f.ctx, f.cs, f.node, &plan.DrainSpec{Timeout: drainTimeout("2m"), SkipWaitForDeleteTimeout: 1}, f.opts())
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
		if f.get("web") != nil {
			t.Error("pod web not evicted")
		}
		if p := f.get("stuck"); p == nil || p.DeletionTimestamp == nil {
			t.Errorf("pod stuck should have been evicted and still be terminating: %+v", p)
		}
		if !f.log.has(`pod \"stuck\" has DeletionTimestamp older than 1 seconds, skipping`) {
			t.Error("no log of the skipped pod")
		}
	})
}

// Defect 2: a pod in a terminating namespace does not fail the drain: the
// eviction is refused (the namespace takes no new content) and retried
// until the namespace controller (played here) deletes the pod, which is
// then waited for until the kubelet (played too) has finished it.
func TestTerminatingNamespace(t *testing.T) {
	f := newFixture(t)
	f.pod("web", owner("ReplicaSet"), grace(30))
	if err := f.cs.CoreV1().Namespaces().Delete(f.ctx, f.ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the apiserver's admission cache sees the namespace
	// terminating, an eviction would simply succeed.
	f.waitFor("the namespace to refuse new content", func() bool {
		_, err := f.cs.CoreV1().ConfigMaps(f.ns).Create(f.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}}, metav1.CreateOptions{})
		return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
	})
	done := f.drainAsync(&plan.DrainSpec{Timeout: drainTimeout("2m")})
	f.waitFor("an eviction refused for the terminating namespace", func() bool {
		return f.log.has(fmt.Sprintf(`from terminating namespace \"%s\"`, f.ns))
	})
	select {
	case err := <-done:
		t.Fatalf("Drain returned while the pod was still there: %v", err)
	default:
	}
	// The namespace controller deletes the pod with its grace period.
	if err := f.cs.CoreV1().Pods(f.ns).Delete(f.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Wait until an attempt starts from the pod re-read as terminating:
	// after that one the drain waits for the pod to go. (kubectl re-reads
	// the pod between attempts but, in v0.36, keeps its stale copy when the
	// pod is already gone; so a pod removed before the drain saw it
	// terminating would keep it retrying until its timeout:
	// kubernetes/kubectl#1767.)
	f.waitFor("the drain to see the pod terminating", func() bool {
		return f.log.has(fmt.Sprintf(`pod=%s/web evict=true terminating=true`, f.ns))
	})
	zero := int64(0)
	if err := f.cs.CoreV1().Pods(f.ns).Delete(f.ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

// Defect 3: a pod already terminating when the drain starts is waited for:
// the drain returns only once it is gone, or fails at the timeout.
func TestWaitsForTerminatingPod(t *testing.T) {
	start := func(t *testing.T) *fixture {
		f := newFixture(t)
		f.pod("old", owner("ReplicaSet"), grace(300))
		// With no kubelet to finish it, the pod stays Terminating.
		if err := f.cs.CoreV1().Pods(f.ns).Delete(f.ctx, "old", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if p := f.get("old"); p == nil || p.DeletionTimestamp == nil {
			t.Fatalf("pod old not terminating: %+v", p)
		}
		return f
	}
	t.Run("returns once it is gone", func(t *testing.T) {
		f := start(t)
		done := f.drainAsync(&plan.DrainSpec{Timeout: drainTimeout("2m")})
		f.waitFor("the drain to take the terminating pod", func() bool {
			return f.log.has(fmt.Sprintf("pod=%s/old evict=true terminating=true", f.ns))
		})
		select {
		case err := <-done:
			t.Fatalf("Drain returned while pod old was terminating: %v", err)
		default:
		}
		zero := int64(0)
		if err := f.cs.CoreV1().Pods(f.ns).Delete(f.ctx, "old", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Drain: %v", err)
		}
	})
	t.Run("fails at the timeout while it stays", func(t *testing.T) {
		f := start(t)
		err := Drain(f.ctx, f.cs, f.node, &plan.DrainSpec{Timeout: drainTimeout("3s")}, f.opts())
		if err == nil || !strings.Contains(err.Error(), `"old"`) {
			t.Fatalf("Drain err = %v, want pod old named", err)
		}
		if f.get("old") == nil {
			t.Fatal("pod old gone; the test no longer models a pod stuck terminating")
		}
	})
}

// Defect 4: one pod a PodDisruptionBudget blocks does not hold up the
// others: they are evicted while it retries, and the drain names it when
// the timeout ends. The blocked pod sorts first, so a drain evicting one
// pod at a time would never reach the others.
func TestPDBBlockedPodDoesNotHoldOthers(t *testing.T) {
	f := newFixture(t)
	f.pod("a-db", owner("ReplicaSet"), label("app", "db"))
	f.pod("web-1", owner("ReplicaSet"), label("app", "web"))
	f.pod("web-2", owner("ReplicaSet"), label("app", "web"))
	one := intstr.FromInt32(1)
	pdb, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).Create(f.ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No disruption controller runs: play it. The one db pod may not go.
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 0,
		CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if _, err := f.cs.PolicyV1().PodDisruptionBudgets(f.ns).UpdateStatus(f.ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = Drain(f.ctx, f.cs, f.node, &plan.DrainSpec{Timeout: drainTimeout("4s")}, f.opts())
	if err == nil || !strings.Contains(err.Error(), `"a-db"`) || !strings.Contains(err.Error(), "global timeout reached") {
		t.Fatalf("Drain err = %v, want a timeout naming a-db", err)
	}
	for _, name := range []string{"web-1", "web-2"} {
		if f.get(name) != nil {
			t.Errorf("pod %s not evicted while a-db was blocked", name)
		}
	}
	if p := f.get("a-db"); p == nil || p.DeletionTimestamp != nil {
		t.Error("pod a-db evicted despite its disruption budget")
	}
	if !f.log.has(`error when evicting pods/\"a-db\"`) || !f.log.has("will retry") {
		t.Error("no log of the blocked eviction being retried")
	}
}
