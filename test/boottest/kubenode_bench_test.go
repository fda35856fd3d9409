package boottest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
	"github.com/kestrel-os/kestrel/test/vm"
)

// BenchmarkKubeNodeReady measures the wall time from qemu's start to the
// Node being Ready in the host's apiserver, for the test-kubelet image
// (upstream kubelet + containerd, first boot: containerd imports the test
// images, the kubelet registers) and for a second boot of the same disk.
// Guest time under TCG on a shared machine: a figure, not a bound.
func BenchmarkKubeNodeReady(b *testing.B) {
	needTools(b)
	if _, err := testenv.BinDir(); err != nil {
		b.Skipf("skipping: %v", err)
	}
	img := buildImageWith(b, imageOpts{Name: "test-kubelet", K3s: "kubelet"})
	port, err := freeHostPort()
	if err != nil {
		b.Fatal(err)
	}
	e, err := testenv.StartWith(b.TempDir(), testenv.Options{KubeletAddr: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Stop()
	cs := kubernetes.NewForConfigOrDie(e.Config)
	dir := b.TempDir()
	disk := withESPConfig(b, img, dir, kubeNodeConfig(b, e, "10m"))
	cfg := vm.Config{Disk: disk, DiskSize: "6G", Dir: dir, Memory: 2048,
		HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:10250", port)}}
	var times []float64
	for i, name := range []string{"first boot", "second boot"} {
		start := time.Now()
		m, err := vm.Start(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), kubeReadyWait)
		err = waitNodeReady(ctx, cs, start)
		cancel()
		if err != nil {
			m.Kill()
			b.Fatalf("%s: %v\n--- console ---\n%s", name, err, tail(m.Console(), 40))
		}
		times = append(times, time.Since(start).Seconds())
		if i == 0 {
			if _, err := m.Expect(readyRE, bootTimeout); err != nil {
				b.Fatal(err)
			}
			m.MustRun("kestrel reboot", cmdTimeout)
			m.Wait(3 * time.Minute)
		}
		m.Kill()
	}
	fmt.Printf("\nreal node (upstream kubelet + containerd) in the VM, qemu start -> Node Ready (TCG, shared CPU):\n")
	fmt.Printf("  first boot %.1f s, second boot %.1f s\n", times[0], times[1])
	b.ReportMetric(times[0], "first-boot-to-Ready-s")
	b.ReportMetric(times[1], "reboot-to-Ready-s")
}

// BenchmarkKubePlanUpgrade measures a whole v1 -> v2 Plan on the real node
// (TestKubeNodePlanUpgrade's first half): from the Plan's creation to its
// Complete condition, through the controller's Job, the drain, `kestrel
// upgrade` in the kubelet's pod, the reboot into slot b and the node's
// return to Ready. Two image builds and three boots: about 15 minutes here.
// Guest time under TCG on a shared machine: a figure, not a bound.
func BenchmarkKubePlanUpgrade(b *testing.B) {
	needTools(b)
	if _, err := testenv.BinDir(); err != nil {
		b.Skipf("skipping: %v", err)
	}
	kp := startKubePlan(b, "0.0.1-kube")
	_, elapsed := kp.upgradeTo("0.0.1-kube")
	fmt.Printf("\nreal node, Plan v1 -> v2 (creation to Complete; TCG, shared CPU): %.1f s\n", elapsed.Seconds())
	b.ReportMetric(elapsed.Seconds(), "plan-v1-v2-s")
}
