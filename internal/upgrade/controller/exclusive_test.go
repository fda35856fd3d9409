package controller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Two exclusive Plans never run their Jobs on the same node at once.
func TestExclusivePlans(t *testing.T) {
	c := newCluster(t)
	c.nodes(2, "v1", nil)
	c.controller(func(cfg *Config) { cfg.Workers = 4 })
	c.sim("", "", jobOnly, 300*time.Millisecond)
	var overlap atomic.Bool
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			perNode := map[string]int{}
			if l, err := c.kube.BatchV1().Jobs(c.ns).List(ctx, metav1.ListOptions{}); err == nil {
				for i := range l.Items {
					if out, _ := job.OutcomeOf(&l.Items[i]); out == job.Running {
						perNode[l.Items[i].Labels[plan.LabelNode]]++
					}
				}
			}
			for _, k := range perNode {
				if k > 1 {
					overlap.Store(true)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	for _, name := range []string{"first", "second"} {
		c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: plan.PlanSpec{
			Concurrency: 2, Exclusive: true, NodeSelector: c.selector(), Version: "v2", Upgrade: &plan.ContainerSpec{Image: "img"}}})
	}
	for _, name := range []string{"first", "second"} {
		c.waitPlan(name, 30*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	}
	if overlap.Load() {
		t.Error("two exclusive plans' jobs ran on one node at the same time")
	}
}
