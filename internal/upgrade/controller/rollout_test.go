package controller

import (
	"sort"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/metrics"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func boolp(b bool) *bool { return &b }

// A SUC plan: selection, SUC's order, concurrency, cordon, post-complete
// labels with $(LATEST_VERSION), Complete at the end.
func TestRolloutSUCPlan(t *testing.T) {
	c := newCluster(t)
	names := c.nodes(7, "v1.0.0", map[string]string{"role": "agent"})
	other := c.nodes(0, "", nil)
	_ = other
	// One node opted out with SUC's "disabled" value, one not matching.
	if err := setNodeLabel(c, names[5], plan.LabelPlanName("k3s"), "disabled"); err != nil {
		t.Fatal(err)
	}
	if err := setNodeLabel(c, names[6], "role", "server"); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	c.controller(func(cfg *Config) { cfg.Metrics = m })
	s := c.sim("k3s", "v1.30.1+k3s1", jobOnly, 150*time.Millisecond)
	p := c.createPlan(&plan.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "k3s"},
		Spec: plan.PlanSpec{
			Concurrency:        2,
			NodeSelector:       c.selector(metav1.LabelSelectorRequirement{Key: "role", Operator: metav1.LabelSelectorOpIn, Values: []string{"agent"}}),
			ServiceAccountName: "system-upgrade",
			Version:            "v1.30.1+k3s1",
			Cordon:             boolp(true),
			Upgrade:            &plan.ContainerSpec{Image: "rancher/k3s-upgrade"},
			PostCompleteLabels: map[string]string{"k3s.example/version": "$(LATEST_VERSION)"},
		},
	})
	got := c.waitPlan(p.Name, 60*time.Second, "Complete=True", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	if got.Status.LatestVersion != "v1.30.1-k3s1" {
		t.Errorf("latestVersion = %q, want v1.30.1-k3s1", got.Status.LatestVersion)
	}
	maxFly, created, resumed := s.stats()
	if maxFly > 2 {
		t.Errorf("up to %d nodes in flight, concurrency is 2", maxFly)
	}
	if len(created) != 5 {
		t.Errorf("jobs created for %d nodes, want 5: %v", len(created), created)
	}
	for n, k := range created {
		if k != 1 {
			t.Errorf("node %s: %d jobs created", n, k)
		}
	}
	// SUC's order: sha256(node UID, plan UID, hash); with concurrency 2 the
	// nodes start in pairs, so compare the sets of each pair.
	var sel []*corev1.Node
	for _, n := range names[:5] {
		sel = append(sel, c.node(n))
	}
	candidateOrder(sel, got, got.Status.LatestHash)
	for i := 0; i+1 < len(resumed) && i+1 < len(sel); i += 2 {
		want := []string{sel[i].Name, sel[i+1].Name}
		have := []string{resumed[i], resumed[i+1]}
		sort.Strings(want)
		sort.Strings(have)
		if want[0] != have[0] || want[1] != have[1] {
			t.Errorf("start order %v, want SUC order %v", resumed, names)
			break
		}
	}
	for _, n := range names[:5] {
		node := c.node(n)
		if node.Labels[plan.LabelPlanName("k3s")] != got.Status.LatestHash {
			t.Errorf("node %s: plan label %q, want hash", n, node.Labels[plan.LabelPlanName("k3s")])
		}
		if node.Labels["k3s.example/version"] != "v1.30.1-k3s1" {
			t.Errorf("node %s: post-complete label = %q", n, node.Labels["k3s.example/version"])
		}
		if node.Spec.Unschedulable {
			t.Errorf("node %s still cordoned", n)
		}
	}
	for _, n := range names[5:] {
		if _, ok := created[n]; ok {
			t.Errorf("node %s (disabled or not selected) got a job", n)
		}
	}
	if len(got.Status.Applying) != 0 {
		t.Errorf("applying = %v at the end", got.Status.Applying)
	}
	for state, want := range map[string]float64{"pending": 0, "applying": 0, "done": 5, "failed": 0} {
		if v := testutil.ToFloat64(m.Nodes.WithLabelValues(c.ns, "k3s", state)); v != want {
			t.Errorf("metric plan_nodes{state=%s} = %v, want %v", state, v, want)
		}
	}
	if v := testutil.ToFloat64(m.JobsCreated.WithLabelValues(c.ns, "k3s")); v != 5 {
		t.Errorf("jobs_created_total = %v, want 5", v)
	}
}

func setNodeLabel(c *cluster, node, k, v string) error {
	n := c.node(node)
	n.Labels[k] = v
	_, err := c.kube.CoreV1().Nodes().Update(c.ctx, n, metav1.UpdateOptions{})
	return err
}
