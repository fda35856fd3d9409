//go:build slow

package boottest

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kestrel-os/kestrel/internal/node/k3s/nodelabels"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
)

// TestKubeNodePlanUpgrade (slow: three image builds and about eight boots
// under TCG): the real upgrade controller on the host, with the real
// kube-controller-manager (Jobs) and kube-scheduler, upgrades the real
// node by a Plan: the kubelet runs the upgrade image (imported into the
// node's containerd from its OCI archive, no registry) as the Job's
// privileged pod, `kestrel upgrade --from /kestrel/release --host /host`
// writes slot b and reboots; v2 comes back Ready with kestrel.io/version
// = v2 and the Plan completes. Then a v3 that is never healthy: its trial
// boots fail, the node falls back to v2 by itself, annotates
// kestrel.io/rolled-back-from, and the controller halts the Plan
// (Halted=True) with a Warning event.
func TestKubeNodePlanUpgrade(t *testing.T) {
	t.Parallel()
	const v2, v3 = "0.0.1-kube", "0.0.2-kube"
	kp := startKubePlan(t, v2, v3)
	k, pc, ns, ctx := kp.k, kp.pc, kp.ns, kp.ctx
	got, _ := kp.upgradeTo(v2)
	p := got

	// v3, never healthy: the node tries it and falls back to v2 by itself.
	k.g.run("mkdir -p /var/lib/rancher/k3s-kubelet")
	writeGuest(k.g.console, "/var/lib/rancher/k3s-kubelet/never-healthy-version", v3+"\n")
	got.Spec.Version = v3
	if _, err := pc.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	k.waitReboot(20 * time.Minute)
	for boot := 1; ; boot++ {
		k.boot()
		if v := k.g.run(". /etc/os-release; echo $VERSION_ID"); v == v2 {
			break
		} else if v != v3 || boot > 6 {
			t.Fatalf("boot %d runs %q, want the v3 trial or v2", boot, v)
		}
		k.waitReboot(10 * time.Minute) // the trial is not good: reboot
	}
	k.waitNodeReady(time.Now().Add(-time.Minute))
	ctxA := testenv.WaitContext(t, 5*time.Minute)
	for {
		n, err := k.cs.CoreV1().Nodes().Get(ctxA, kubeNodeName, metav1.GetOptions{})
		if err == nil && n.Annotations[nodelabels.AnnotationRolledBack] == v3 && n.Labels[nodelabels.LabelVersion] == v2 {
			break
		}
		if ctxA.Err() != nil {
			t.Fatalf("node after the v3 rollback: %v %v (%v)", n.Labels, n.Annotations, err)
		}
		time.Sleep(3 * time.Second)
	}
	waitPlanCond(t, pc, ns, p.Name, plan.CondHalted, 15*time.Minute)
	evs, err := k.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var warned bool
	for _, e := range evs.Items {
		if e.Type == corev1.EventTypeWarning && e.InvolvedObject.Kind == "Plan" && strings.Contains(e.Message, kubeNodeName) {
			warned = true
			t.Logf("event: %s %s: %s", e.Type, e.Reason, e.Message)
		}
	}
	if !warned {
		t.Errorf("no Warning event on the Plan naming %s: %v", kubeNodeName, evs.Items)
	}
}
