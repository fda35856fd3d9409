package boottest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
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

// kubePlan is a real node (test-kubelet image, v1) Ready in the host's
// apiserver, with kube-controller-manager and kube-scheduler, the upgrade
// images of the given releases imported into the node's containerd, and the
// real upgrade controller running in the test process: what a Plan needs.
type kubePlan struct {
	t   testing.TB
	ctx context.Context
	k   *kubeNode
	pc  *plan.Client
	ns  string
}

// startKubePlan builds an upgrade image per version (test-kubelet-v2, -v3,
// ...), boots the v1 node and starts the controller.
func startKubePlan(t testing.TB, versions ...string) *kubePlan {
	dirs := map[string]string{}
	for i, v := range versions {
		dirs[v] = buildImageWith(t, imageOpts{Name: fmt.Sprintf("test-kubelet-v%d", i+2), K3s: "kubelet", Version: v, UpgradeImage: true}).Dir
	}
	// The node's binaries came with the image; the controllers the Jobs
	// need are built only here (the default suite does without them).
	script := exec.Command("bash", "scripts/k8s-node-bins.sh", "--controllers")
	script.Dir, script.Stdout, script.Stderr = repoRoot(), io.Discard, os.Stderr
	if err := script.Run(); err != nil {
		t.Fatalf("scripts/k8s-node-bins.sh --controllers: %v", err)
	}
	bins := filepath.Join(repoRoot(), ".cache", "k8s-node-bins")
	k := startKubeNodeWith(t, testenv.Options{Controllers: true, ControllerBins: bins}, "2m")
	ctx := context.Background()
	k.bootReady()

	// The upgrade images, into the node's containerd (k8s.io namespace).
	archives := t.TempDir()
	for v, dir := range dirs {
		name := pipeline.UpgradeArchiveName(v)
		if err := os.Link(filepath.Join(dir, name), filepath.Join(archives, name)); err != nil {
			t.Fatal(err)
		}
	}
	url := serve(t, archives)
	for _, v := range versions {
		name := pipeline.UpgradeArchiveName(v)
		out := k.g.run(fmt.Sprintf("mkdir -p /var/lib/kestrel-test && cd /var/lib/kestrel-test && wget -q -O %s %s/%s && ctr --address /run/k3s/containerd/containerd.sock -n k8s.io images import --base-name %s %s 2>&1; echo rc=$?; rm -f %s; cd /",
			name, url, name, upgradeRepo, name, name))
		if !strings.Contains(out, "rc=0") {
			t.Fatalf("import %s: %s", name, out)
		}
	}
	k.g.contains("ctr --address /run/k3s/containerd/containerd.sock -n k8s.io images ls -q", upgradeRepo+":"+plan.MungeVersion(versions[0]))

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
	return &kubePlan{t: t, ctx: ctx, k: k, pc: pc, ns: ns}
}

// upgradeTo creates the Plan "kestrel" for version v and waits for the
// Job's reboot, the node's return and the Plan's Complete; it returns the
// Plan and the time from its creation to Complete.
func (kp *kubePlan) upgradeTo(v string) (*plan.Plan, time.Duration) {
	kp.t.Helper()
	start := time.Now()
	yes := true
	p, err := kp.pc.Create(kp.ctx, &plan.Plan{
		ObjectMeta: metav1.ObjectMeta{Name: "kestrel", Namespace: kp.ns, Annotations: map[string]string{"kestrel.io/upgrade": "true"}},
		Spec: plan.PlanSpec{
			Concurrency: 1, Version: v, Cordon: &yes, ServiceAccountName: "kestrel-upgrade-job",
			NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: nodelabels.LabelSlot, Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
			Drain:   &plan.DrainSpec{Force: true, IgnoreDaemonSets: &yes},
			Upgrade: &plan.ContainerSpec{Image: upgradeRepo},
		},
	})
	if err != nil {
		kp.t.Fatal(err)
	}
	kp.k.waitReboot(20 * time.Minute) // the Job's `kestrel upgrade` reboots the node
	kp.k.bootReady()
	got := waitPlanCond(kp.t, kp.pc, kp.ns, p.Name, plan.CondComplete, 20*time.Minute)
	elapsed := time.Since(start)
	kp.t.Logf("Plan to %s complete in %v (TCG, shared CPU: noisy)", v, elapsed.Round(time.Second))
	n, err := kp.k.cs.CoreV1().Nodes().Get(kp.ctx, kubeNodeName, metav1.GetOptions{})
	if err != nil {
		kp.t.Fatal(err)
	}
	if n.Labels[nodelabels.LabelVersion] != v || n.Labels[nodelabels.LabelSlot] != "b" {
		kp.t.Errorf("after the Plan to %s: labels %v, want version %s slot b", v, n.Labels, v)
	}
	if n.Labels[plan.LabelPlanName(p.Name)] != got.Status.LatestHash {
		kp.t.Errorf("node not labelled done for the Plan: %v", n.Labels)
	}
	return got, elapsed
}

// waitPlanCond waits until the Plan's condition cond is True.
func waitPlanCond(t testing.TB, pc *plan.Client, ns, name, cond string, within time.Duration) *plan.Plan {
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

type testLog struct{ t testing.TB }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
