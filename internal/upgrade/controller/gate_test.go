package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

func kestrelPlan(c *cluster, name, version string, conc int64) *plan.Plan {
	return &plan.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: plan.PlanSpec{
			Concurrency: conc, NodeSelector: c.selector(), Version: version, Cordon: boolp(true),
			Upgrade: &plan.ContainerSpec{Image: "ghcr.io/kestrel-os/kestrel-upgrade", Command: []string{"kestrel", "upgrade"}},
		},
	}
}

// Success: every node reboots onto the new version; a node counts as done
// only once it is back Ready on it.
func TestHealthGateSuccess(t *testing.T) {
	c := newCluster(t)
	names := c.nodes(4, "v1.0.0", nil)
	c.controller(nil)
	s := c.sim("os", "v1.1.0", upgradeOK, 300*time.Millisecond)
	p := c.createPlan(kestrelPlan(c, "os", "v1.1.0", 2))
	// While the first nodes are between "job complete" and "Ready again",
	// they are still applying and not labelled done.
	c.waitPlan(p.Name, 20*time.Second, "a node mid-reboot", func(p *plan.Plan) bool {
		for _, n := range p.Status.Applying {
			node := c.node(n)
			for _, cnd := range node.Status.Conditions {
				if cnd.Type == corev1.NodeReady && cnd.Status == corev1.ConditionFalse {
					if node.Labels[plan.LabelPlanName("os")] == p.Status.LatestHash {
						t.Errorf("node %s labelled done while NotReady", n)
					}
					return true
				}
			}
		}
		return false
	})
	got := c.waitPlan(p.Name, 60*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	if x := got.Status.Condition(plan.CondHalted); x == nil || x.Status != "False" {
		t.Errorf("Halted = %s", cond(got, plan.CondHalted))
	}
	for _, n := range names {
		node := c.node(n)
		if node.Labels[health.LabelVersion] != "v1.1.0" || node.Labels[plan.LabelPlanName("os")] != got.Status.LatestHash {
			t.Errorf("node %s: version %q plan label %q", n, node.Labels[health.LabelVersion], node.Labels[plan.LabelPlanName("os")])
		}
	}
	if maxFly, _, _ := s.stats(); maxFly > 2 {
		t.Errorf("%d nodes in flight, concurrency 2", maxFly)
	}
}

// A node that comes back rolled back (or on the old version, or never)
// halts the rollout: no new node starts, the Plan says which node and why
// (condition and event), and that version is never retried on that node,
// even when the operator resumes the rollout.
func TestHealthGateHalts(t *testing.T) {
	cases := []struct {
		name   string
		b      behaviour
		reason string
	}{
		{"rolled-back", rollBack, health.ReasonRolledBack},
		{"old-version", oldVersion, health.ReasonOldVersion},
		{"never-back", neverBack, health.ReasonTimeout},
		{"job-failed", jobFails, ReasonJobFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			c.nodes(4, "v1.0.0", nil)
			c.controller(func(cfg *Config) { cfg.Health.Deadline = 8 * time.Second; cfg.Health.Settle = time.Second })
			s := c.sim("os", "v1.1.0", upgradeOK, 200*time.Millisecond)
			// Pick the node SUC's order starts second, make it fail.
			p := c.createPlan(kestrelPlan(c, "os", "v1.1.0", 1))
			p = c.waitPlan(p.Name, 10*time.Second, "hash", func(p *plan.Plan) bool { return p.Status.LatestHash != "" })
			var sel []*corev1.Node
			for i := 0; i < 4; i++ {
				sel = append(sel, c.node(c.prefix+"node-0"+string(rune('0'+i))))
			}
			candidateOrder(sel, p, p.Status.LatestHash)
			bad := sel[1].Name
			s.set(bad, tc.b)

			got := c.waitPlan(p.Name, 30*time.Second, "Halted", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondHalted) })
			h := got.Status.Condition(plan.CondHalted)
			if !strings.Contains(h.Message, bad) || !strings.Contains(h.Message, tc.reason) || !strings.Contains(h.Message, "v1.1.0") {
				t.Errorf("Halted message %q should name node %s, reason %s and the version", h.Message, bad, tc.reason)
			}
			if x := got.Status.Condition(plan.CondComplete); x.Status != "False" || x.Reason != ReasonHalted {
				t.Errorf("Complete = %s", cond(got, plan.CondComplete))
			}
			node := c.node(bad)
			if node.Annotations[FailedPrefix+"os"] != "v1.1.0" {
				t.Errorf("node %s not marked failed: %v", bad, node.Annotations)
			}
			// An event on the Plan names the node and the reason.
			waitTrue(t, c, 10*time.Second, "a warning event on the plan", func() bool {
				evs, err := c.kube.CoreV1().Events(c.ns).List(c.ctx, metav1.ListOptions{
					FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "os").String()})
				if err != nil {
					return false
				}
				for _, e := range evs.Items {
					if e.Type == corev1.EventTypeWarning && e.Reason == tc.reason && strings.Contains(e.Message, bad) {
						return true
					}
				}
				return false
			})
			// Nothing new starts while halted.
			time.Sleep(1500 * time.Millisecond)
			_, created, _ := s.stats()
			if len(created) != 2 {
				t.Errorf("jobs for %d nodes after the halt (want 2: the good first node and %s): %v", len(created), bad, created)
			}
			// The operator resumes this version: the others go on, the bad
			// node is not retried.
			cur, err := c.plans.Get(c.ctx, c.ns, "os")
			if err != nil {
				t.Fatal(err)
			}
			cur.Annotations = map[string]string{AnnotationResume: "v1.1.0"}
			if _, err := c.plans.Update(c.ctx, cur); err != nil {
				t.Fatal(err)
			}
			waitTrue(t, c, 30*time.Second, "the other nodes upgraded", func() bool {
				done := 0
				for _, n := range sel {
					if c.node(n.Name).Labels[plan.LabelPlanName("os")] == p.Status.LatestHash {
						done++
					}
				}
				return done == 3
			})
			time.Sleep(500 * time.Millisecond)
			_, created, _ = s.stats()
			if created[bad] != 1 {
				t.Errorf("bad node %s got %d jobs; the failed version must not be retried", bad, created[bad])
			}
			for n, k := range created {
				if k != 1 {
					t.Errorf("node %s: %d jobs", n, k)
				}
			}
			if c.node(bad).Labels[plan.LabelPlanName("os")] == p.Status.LatestHash {
				t.Errorf("failed node %s labelled done", bad)
			}
		})
	}
}
