package controller

import (
	"context"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Drain goes through the eviction API: while a PodDisruptionBudget allows
// no disruption the node's pods stay and its Job stays paused; once the
// budget allows it, the pods are evicted, the Job runs and the node ends
// uncordoned. DaemonSet pods and the upgrade's own pods are left alone.
func TestDrainRespectsPDB(t *testing.T) {
	c := newCluster(t)
	nodes := c.nodes(1, "v1", nil)
	node := nodes[0]
	zero := int64(0)
	mkPod := func(name, ownerKind string, lbls map[string]string) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: ownerKind, Name: "owner", UID: "00000000-0000-0000-0000-000000000001", Controller: boolp(true)}}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &zero,
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		created, err := c.kube.CoreV1().Pods(c.ns).Create(c.ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Running and Ready, as a kubelet would report: the eviction API
		// lets Pending or unready pods go regardless of the budget.
		created.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := c.kube.CoreV1().Pods(c.ns).UpdateStatus(c.ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// kubectl's drain looks the DaemonSet up: an orphaned DaemonSet pod
	// would be deleted under force.
	dsLabels := map[string]string{"app": "ds"}
	if _, err := c.kube.AppsV1().DaemonSets(c.ns).Create(c.ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "owner"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: dsLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dsLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mkPod("web-1", "ReplicaSet", map[string]string{"app": "web"})
	mkPod("web-2", "ReplicaSet", map[string]string{"app": "web"})
	mkPod("ds", "DaemonSet", dsLabels)
	minAvail := intstr.FromInt32(2)
	pdb, err := c.kube.PolicyV1().PodDisruptionBudgets(c.ns).Create(c.ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvail, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No disruption controller runs: play it. Nothing may be disrupted yet.
	setPDB := func(allowed int32) {
		cur, err := c.kube.PolicyV1().PodDisruptionBudgets(c.ns).Get(c.ctx, pdb.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: cur.Generation, DisruptionsAllowed: allowed,
			CurrentHealthy: 2, DesiredHealthy: 2 - allowed, ExpectedPods: 2}
		if allowed == 0 {
			cur.Status.DesiredHealthy = 2
		}
		if _, err := c.kube.PolicyV1().PodDisruptionBudgets(c.ns).UpdateStatus(c.ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPDB(0)
	c.controller(func(cfg *Config) { cfg.DrainRetryDelay = 200 * time.Millisecond })
	c.sim("drain", "v2", jobOnly, 0)
	p := c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "drain"}, Spec: plan.PlanSpec{
		Concurrency: 1, NodeSelector: c.selector(), Version: "v2", Upgrade: &plan.ContainerSpec{Image: "img"},
		Drain: &plan.DrainSpec{Force: true}}})

	// The Job exists, paused, the node is cordoned, the pods are still there.
	waitTrue(t, c, 20*time.Second, "a paused job and a cordoned node", func() bool {
		js := c.jobs()
		return len(js) == 1 && job.Paused(&js[0]) && c.node(node).Spec.Unschedulable
	})
	time.Sleep(2 * time.Second)
	for _, name := range []string{"web-1", "web-2"} {
		if _, err := c.kube.CoreV1().Pods(c.ns).Get(c.ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatalf("pod %s gone while the PDB allows no disruption: %v", name, err)
		}
	}
	if js := c.jobs(); !job.Paused(&js[0]) {
		t.Fatal("job let run before the drain finished")
	}
	setPDB(2)
	c.waitPlan(p.Name, 30*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	for _, name := range []string{"web-1", "web-2"} {
		if _, err := c.kube.CoreV1().Pods(c.ns).Get(c.ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod %s not evicted: %v", name, err)
		}
	}
	if _, err := c.kube.CoreV1().Pods(c.ns).Get(c.ctx, "ds", metav1.GetOptions{}); err != nil {
		t.Errorf("DaemonSet pod was evicted: %v", err)
	}
	if c.node(node).Spec.Unschedulable {
		t.Error("node left cordoned after the upgrade")
	}
}

func waitTrue(t *testing.T, c *cluster, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(c.ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return f(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
