package controller

import (
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A change to a Secret the Plan mounts changes latestHash and rolls the
// Plan again (SUC's semantics); an ignoreUpdates Secret does not.
func TestSecretChangeRerolls(t *testing.T) {
	c := newCluster(t)
	nodes := c.nodes(1, "v1", nil)
	for _, n := range []string{"watched", "ignored"} {
		if _, err := c.kube.CoreV1().Secrets(c.ns).Create(c.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: n},
			StringData: map[string]string{"k": "1"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.controller(nil)
	c.sim("s", "v2", jobOnly, 0)
	c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: plan.PlanSpec{
		Concurrency: 1, NodeSelector: c.selector(), Version: "v2", Upgrade: &plan.ContainerSpec{Image: "img"},
		Secrets: []plan.SecretSpec{{Name: "watched", Path: "/w"}, {Name: "ignored", Path: "/i", IgnoreUpdates: true}}}})
	first := c.waitPlan("s", 20*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	bump := func(name, v string) {
		s, err := c.kube.CoreV1().Secrets(c.ns).Get(c.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data["k"] = []byte(v)
		if _, err := c.kube.CoreV1().Secrets(c.ns).Update(c.ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bump("ignored", "2")
	time.Sleep(time.Second)
	if p, _ := c.plans.Get(c.ctx, c.ns, "s"); p.Status.LatestHash != first.Status.LatestHash {
		t.Fatalf("an ignoreUpdates secret changed the hash")
	}
	bump("watched", "2")
	second := c.waitPlan("s", 20*time.Second, "a new hash, complete", func(p *plan.Plan) bool {
		return p.Status.LatestHash != first.Status.LatestHash && p.Status.IsTrue(plan.CondComplete)
	})
	if got := c.node(nodes[0]).Labels[plan.LabelPlanName("s")]; got != second.Status.LatestHash {
		t.Errorf("node label %q, want the new hash", got)
	}
	if n := len(c.jobs()); n != 1 {
		t.Errorf("%d jobs; the old hash's job should be gone", n)
	}
}
