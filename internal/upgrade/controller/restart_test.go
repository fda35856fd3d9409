package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
)

// leaderController runs a controller under leader election as the
// command does, and, like the Deployment restarting the exited process,
// starts a fresh controller whenever one loses its lease (for instance
// while the apiserver is down). stop releases the lease.
func (c *cluster) leaderController(id string) (stop func()) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for gen := 0; ctx.Err() == nil; gen++ {
			ctl, err := New(Config{
				RestConfig: env.Config, Namespace: c.ns,
				Health: health.Gate{Deadline: 60 * time.Second, Settle: 2 * time.Second},
				Log:    slog.New(slog.NewTextHandler(testWriter{c.t}, nil)).With("instance", id, "gen", gen),
			})
			if err != nil {
				c.t.Error(err)
				return
			}
			err = RunWithLeaderElection(ctx, env.Config, Leader{Namespace: c.ns, Name: "upgrade-controller", Identity: id,
				LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}, ctl.Run)
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, ErrLostLeadership):
				c.t.Logf("controller %s gen %d lost its lease; restarting it", id, gen)
			case err != nil:
				c.t.Logf("controller %s gen %d: %v; restarting it", id, gen, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	c.t.Cleanup(stop)
	return stop
}

// The apiserver and the controller are both restarted in the middle of a
// rollout: the concurrency is never exceeded, no node is started twice,
// and the rollout finishes.
func TestSurvivesRestarts(t *testing.T) {
	c := newCluster(t)
	names := c.nodes(12, "v1", nil)
	stopA := c.leaderController("a")
	s := c.sim("os", "v2", upgradeOK, 400*time.Millisecond)

	// Watch status.applying throughout.
	var mu sync.Mutex
	maxApplying := 0
	wctx, wcancel := context.WithCancel(c.ctx)
	defer wcancel()
	go func() {
		for wctx.Err() == nil {
			if p, err := c.plans.Get(wctx, c.ns, "os"); err == nil {
				mu.Lock()
				if len(p.Status.Applying) > maxApplying {
					maxApplying = len(p.Status.Applying)
				}
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	p := c.createPlan(kestrelPlan(c, "os", "v2", 3))
	doneCount := func() int {
		n := 0
		for _, name := range names {
			if c.node(name).Labels[plan.LabelPlanName("os")] != "" {
				n++
			}
		}
		return n
	}
	waitTrue(t, c, 30*time.Second, "3 nodes done", func() bool { return doneCount() >= 3 })

	t.Log("restarting the apiserver")
	env.StopAPIServer()
	time.Sleep(3 * time.Second)
	if err := env.StartAPIServer(); err != nil {
		t.Fatalf("restart apiserver: %v", err)
	}
	waitTrue(t, c, 60*time.Second, "6 nodes done", func() bool { return doneCount() >= 6 })

	// A second instance waits on the Lease while the first still holds it,
	// then takes over when the first stops (a rolling restart).
	t.Log("restarting the controller")
	c.leaderController("b")
	time.Sleep(time.Second)
	stopA()
	got := c.waitPlan(p.Name, 90*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	if doneCount() != 12 {
		t.Errorf("%d of 12 nodes done", doneCount())
	}
	maxFly, created, _ := s.stats()
	mu.Lock()
	defer mu.Unlock()
	if maxFly > 3 || maxApplying > 3 {
		t.Errorf("concurrency 3 exceeded: %d nodes in flight, %d applying", maxFly, maxApplying)
	}
	if len(created) != 12 {
		t.Errorf("jobs for %d nodes, want 12", len(created))
	}
	for n, k := range created {
		if k != 1 {
			t.Errorf("node %s started %d times", n, k)
		}
	}
	if len(got.Status.Applying) != 0 {
		t.Errorf("applying %v at the end", got.Status.Applying)
	}
}
