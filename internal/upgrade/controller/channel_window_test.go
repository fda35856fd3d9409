package controller

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/channel"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// httpChannel lets a Plan use the tests' plain-http channel servers.
var httpChannel = map[string]string{channel.AnnotationAllowHTTP: "true"}

// Channel resolution on a real apiserver: a 302 channel and a 200 channel
// set latestVersion; the cluster ID header is kube-system's UID.
func TestChannelResolution(t *testing.T) {
	c := newCluster(t)
	c.nodes(1, "v1", nil)
	var mu sync.Mutex
	var clusterIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		clusterIDs = append(clusterIDs, r.Header.Get("X-SUC-Cluster-ID"))
		mu.Unlock()
		switch r.URL.Path {
		case "/latest":
			http.Redirect(w, r, "https://example.invalid/kestrel/releases/tag/v0.9.1+rc1", http.StatusFound)
		case "/v0.8.0":
			w.WriteHeader(http.StatusOK)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c.controller(nil)
	for _, tc := range []struct{ name, path, want string }{
		{"redirect", "/latest", "v0.9.1-rc1"},
		{"ok", "/v0.8.0", "v0.8.0"},
	} {
		p := c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: tc.name, Annotations: httpChannel}, Spec: plan.PlanSpec{
			NodeSelector: c.selector(), Channel: srv.URL + tc.path, Upgrade: &plan.ContainerSpec{Image: "img"}}})
		got := c.waitPlan(p.Name, 20*time.Second, "LatestResolved", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondLatestResolved) })
		if got.Status.LatestVersion != tc.want {
			t.Errorf("%s: latestVersion = %q, want %q", tc.name, got.Status.LatestVersion, tc.want)
		}
		if r := got.Status.Condition(plan.CondLatestResolved).Reason; r != ReasonChannel {
			t.Errorf("%s: reason %q", tc.name, r)
		}
	}
	ks, err := c.kube.CoreV1().Namespaces().Get(c.ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range clusterIDs {
		if id != string(ks.UID) {
			t.Errorf("X-SUC-Cluster-ID = %q, want kube-system UID %s", id, ks.UID)
		}
	}
}

// An unreachable or malformed channel is reported in LatestResolved and
// retried with backoff; nothing is scheduled until it resolves.
func TestChannelFailuresRetried(t *testing.T) {
	c := newCluster(t)
	c.nodes(1, "v1", nil)
	var hits atomic.Int32
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() {
			w.Header().Set("Location", "/") // a 302 naming no version
			w.WriteHeader(http.StatusFound)
			return
		}
		http.Redirect(w, r, "/v2.0.0", http.StatusFound)
	}))
	defer srv.Close()
	c.controller(nil)
	c.sim("flaky", "v2.0.0", jobOnly, 0)
	unreachable := c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "unreachable", Annotations: httpChannel}, Spec: plan.PlanSpec{
		Concurrency: 1, NodeSelector: c.selector(), Channel: "http://127.0.0.1:1/latest", Upgrade: &plan.ContainerSpec{Image: "img"}}})
	flaky := c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "flaky", Annotations: httpChannel}, Spec: plan.PlanSpec{
		Concurrency: 1, NodeSelector: c.selector(), Channel: srv.URL + "/latest", Upgrade: &plan.ContainerSpec{Image: "img"}}})

	for _, name := range []string{unreachable.Name, flaky.Name} {
		got := c.waitPlan(name, 20*time.Second, "a retried failure", func(p *plan.Plan) bool {
			x := p.Status.Condition(plan.CondLatestResolved)
			return x != nil && x.Status == "False" && strings.Contains(x.Message, "attempt 3")
		})
		x := got.Status.Condition(plan.CondLatestResolved)
		if x.Reason != ReasonError || !strings.Contains(x.Message, "retrying in") {
			t.Errorf("%s: LatestResolved = %s", name, cond(got, plan.CondLatestResolved))
		}
		if got.Status.LatestVersion != "" || len(got.Status.Applying) != 0 {
			t.Errorf("%s: scheduled without a version: %+v", name, got.Status)
		}
	}
	if n := len(c.jobs()); n != 0 {
		t.Fatalf("%d jobs while the channel is broken", n)
	}
	// Backoff: 200ms, 400ms, 800ms, 1s cap: a few hits, not hundreds.
	if h := hits.Load(); h > 20 {
		t.Errorf("channel hit %d times: no backoff", h)
	}
	healthy.Store(true)
	got := c.waitPlan(flaky.Name, 20*time.Second, "Complete after the channel recovered", func(p *plan.Plan) bool {
		return p.Status.IsTrue(plan.CondLatestResolved) && p.Status.IsTrue(plan.CondComplete)
	})
	if got.Status.LatestVersion != "v2.0.0" {
		t.Errorf("latestVersion = %q", got.Status.LatestVersion)
	}
}

// Outside spec.window nothing starts; once the window contains now, it does.
func TestWindowGatesStart(t *testing.T) {
	c := newCluster(t)
	c.nodes(2, "v1", nil)
	c.controller(nil)
	c.sim("win", "v2", jobOnly, 0)
	now := time.Now().UTC()
	tomorrow := plan.Day(strings.ToLower(now.Add(48 * time.Hour).Weekday().String()))
	p := c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "win"}, Spec: plan.PlanSpec{
		Concurrency: 2, NodeSelector: c.selector(), Version: "v2", Upgrade: &plan.ContainerSpec{Image: "img"},
		Window: &plan.TimeWindowSpec{Days: []plan.Day{tomorrow}, StartTime: "00:00", EndTime: "23:59"}}})
	got := c.waitPlan(p.Name, 20*time.Second, "waiting for window", func(p *plan.Plan) bool {
		x := p.Status.Condition(plan.CondComplete)
		return x != nil && strings.Contains(x.Message, "spec.window")
	})
	time.Sleep(500 * time.Millisecond)
	if n := len(c.jobs()); n != 0 || len(got.Status.Applying) != 0 {
		t.Fatalf("%d jobs, applying %v outside the window", n, got.Status.Applying)
	}
	got.Spec.Window.Days = append(got.Spec.Window.Days, plan.Day(strings.ToLower(now.Weekday().String())),
		plan.Day(strings.ToLower(now.Add(-24*time.Hour).Weekday().String())))
	if _, err := c.plans.Update(c.ctx, got); err != nil {
		t.Fatal(err)
	}
	c.waitPlan(p.Name, 20*time.Second, "Complete inside the window", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
}
