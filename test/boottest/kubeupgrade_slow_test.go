//go:build slow

package boottest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kestrel-os/kestrel/internal/build/pipeline"
	"github.com/kestrel-os/kestrel/internal/node/k3s/nodelabels"
	"github.com/kestrel-os/kestrel/internal/upgrade/controller"
	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
)

// upgradeRepo is the upgrade image's name in the node's containerd: its
// repository is named kestrel-upgrade, so the controller treats the Plan as
// a Kestrel Plan (health gate) as it does the shipped one.
const upgradeRepo = "kestrel.test/kestrel-upgrade"

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
	const v2, v3 = "0.0.1-kube", "0.0.2-kube"
	img2 := buildImageWith(t, imageOpts{Name: "test-kubelet-v2", K3s: "kubelet", Version: v2, UpgradeImage: true})
	img3 := buildImageWith(t, imageOpts{Name: "test-kubelet-v3", K3s: "kubelet", Version: v3, UpgradeImage: true})
	bins := filepath.Join(repoRoot(), ".cache", "k8s-node-bins")
	k := startKubeNodeWith(t, testenv.Options{Controllers: true, ControllerBins: bins}, "2m")
	ctx := context.Background()
	k.bootReady()

	// The upgrade images, into the node's containerd (k8s.io namespace).
	archives := t.TempDir()
	for _, a := range []struct{ dir, v string }{{img2.Dir, v2}, {img3.Dir, v3}} {
		name := pipeline.UpgradeArchiveName(a.v)
		if err := os.Link(filepath.Join(a.dir, name), filepath.Join(archives, name)); err != nil {
			t.Fatal(err)
		}
	}
	url := serve(t, archives)
	for _, v := range []string{v2, v3} {
		name := pipeline.UpgradeArchiveName(v)
		out := k.g.run(fmt.Sprintf("mkdir -p /var/lib/kestrel-test && cd /var/lib/kestrel-test && wget -q -O %s %s/%s && ctr --address /run/k3s/containerd/containerd.sock -n k8s.io images import --base-name %s %s 2>&1; echo rc=$?; rm -f %s; cd /",
			name, url, name, upgradeRepo, name, name))
		if !strings.Contains(out, "rc=0") {
			t.Fatalf("import %s: %s", name, out)
		}
	}
	k.g.contains("ctr --address /run/k3s/containerd/containerd.sock -n k8s.io images ls -q", upgradeRepo+":"+plan.MungeVersion(v2))

	// The controller, as upgradecontroller_test.go's manifests run it in a
	// cluster, here in the test process against the same apiserver.
	if err := controller.InstallCRD(ctx, k.env.Config); err != nil {
		t.Fatal(err)
	}
	const ns = "kestrel-upgrade"
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kestrel-upgrade-job"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctl, err := controller.New(controller.Config{
		RestConfig: k.env.Config, Namespace: ns,
		Health: health.Gate{Deadline: 20 * time.Minute, Settle: 10 * time.Second},
		Log:    slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = ctl.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pc, err := plan.NewClient(k.env.Config)
	if err != nil {
		t.Fatal(err)
	}

	// v1 -> v2.
	start := time.Now()
	yes := true
	p, err := pc.Create(ctx, &plan.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "kestrel", Namespace: ns, Annotations: map[string]string{"kestrel.io/upgrade": "true"}},
		Spec: plan.PlanSpec{
			Concurrency: 1, Version: v2, Cordon: &yes, ServiceAccountName: "kestrel-upgrade-job",
			NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: nodelabels.LabelSlot, Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
			Drain:   &plan.DrainSpec{Force: true, IgnoreDaemonSets: &yes},
			Upgrade: &plan.ContainerSpec{Image: upgradeRepo},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	k.waitReboot(20 * time.Minute) // the Job's `kestrel upgrade` reboots the node
	k.bootReady()
	got := waitPlanCond(t, pc, ns, p.Name, plan.CondComplete, 20*time.Minute)
	elapsed := time.Since(start)
	t.Logf("Plan v1 -> v2 complete in %v (TCG, shared CPU: noisy)", elapsed.Round(time.Second))
	n, err := k.cs.CoreV1().Nodes().Get(ctx, kubeNodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[nodelabels.LabelVersion] != v2 || n.Labels[nodelabels.LabelSlot] != "b" {
		t.Errorf("after the v2 Plan: labels %v, want version %s slot b", n.Labels, v2)
	}
	if n.Labels[plan.LabelPlanName(p.Name)] != got.Status.LatestHash {
		t.Errorf("node not labelled done for the Plan: %v", n.Labels)
	}

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

// waitPlanCond waits until the Plan's condition cond is True.
func waitPlanCond(t *testing.T, pc *plan.Client, ns, name, cond string, within time.Duration) *plan.Plan {
	t.Helper()
	ctx := testenv.WaitContext(t, within)
	var last *plan.Plan
	for {
		p, err := pc.Get(ctx, ns, name)
		if err == nil {
			last = p
			if p.Status.IsTrue(cond) {
				return p
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("Plan %s not %s within %v: %+v", name, cond, within, last)
		}
		time.Sleep(3 * time.Second)
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
