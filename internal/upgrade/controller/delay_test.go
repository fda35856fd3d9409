package controller

import (
	"sort"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// spec.postCompleteDelay holds the next node back after a Job completes.
func TestPostCompleteDelay(t *testing.T) {
	c := newCluster(t)
	c.nodes(2, "v1", nil)
	c.controller(nil)
	c.sim("d", "v2", jobOnly, 0)
	c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: plan.PlanSpec{
		Concurrency: 1, NodeSelector: c.selector(), Version: "v2", Upgrade: &plan.ContainerSpec{Image: "img"},
		PostCompleteDelay: &metav1.Duration{Duration: 3 * time.Second}}})
	c.waitPlan("d", 30*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	js := c.jobs()
	if len(js) != 2 {
		t.Fatalf("%d jobs", len(js))
	}
	sort.Slice(js, func(i, j int) bool { return js[i].CreationTimestamp.Before(&js[j].CreationTimestamp) })
	if js[0].Status.CompletionTime == nil {
		t.Fatal("first job has no completion time")
	}
	// Timestamps have second resolution.
	if gap := js[1].CreationTimestamp.Sub(js[0].Status.CompletionTime.Time); gap < 2*time.Second {
		t.Errorf("second job created %s after the first completed; postCompleteDelay is 3s", gap)
	}
}
