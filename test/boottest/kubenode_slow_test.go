//go:build slow

package boottest

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
)

// Behind the slow tag: on a fresh machine TestKubeNode costs ~10 minutes
// of the default suite (building kubelet and containerd, ~6 min on two
// cores, an image, two boots), which took the suite past its 30 minutes.
// make test-all and make bench run it (BenchmarkKubeNodeReady boots the
// same node).

// TestKubeNode: the VM becomes a Ready node of the host's apiserver with
// the upstream kubelet and containerd; a pod serves over the CNI bridge, a
// second pod fetches from it, writes to a hostPath under /var and logs
// what it got, readable through the apiserver (which reached the kubelet
// through the forwarded port); the node labels itself with its own
// credentials; after a reboot it is Ready again, the pod's data is there
// and the serving pod runs again. One VM, two boots.
func TestKubeNode(t *testing.T) {
	t.Parallel()
	k := startKubeNode(t)
	ctx := context.Background()
	readyIn := k.bootReady()
	t.Logf("boot to node Ready: %v (TCG, shared CPU: noisy)", readyIn.Round(time.Second))
	k.checkLabels("a")

	web := testPod("web", corev1.RestartPolicyAlways,
		`mkdir -p /www && echo "kestrel-pod-net-ok from $(hostname)" > /www/index.html && echo serving && exec httpd -f -v -p 8080 -h /www`)
	if _, err := k.cs.CoreV1().Pods("default").Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	webPod := k.waitPod("web", corev1.PodRunning)
	if webPod.Status.PodIP == "" || !strings.HasPrefix(webPod.Status.PodIP, "10.42.0.") {
		t.Fatalf("web pod IP %q, want one of the CNI bridge's 10.42.0.0/24", webPod.Status.PodIP)
	}
	client := testPod("client", corev1.RestartPolicyNever,
		`for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O /data/fetched http://$WEB:8080/ && break; sleep 2; done; `+
			`cat /data/fetched && ip -4 addr show eth0 | grep inet`,
		corev1.EnvVar{Name: "WEB", Value: webPod.Status.PodIP})
	if _, err := k.cs.CoreV1().Pods("default").Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := k.waitPod("client", corev1.PodSucceeded, corev1.PodFailed); p.Status.Phase != corev1.PodSucceeded {
		t.Errorf("client pod %s: %s", p.Status.Phase, containerStates(p))
	}
	logs, err := k.cs.CoreV1().Pods("default").GetLogs("client", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("client logs through the apiserver: %v (kubelet dials: %v)", err, k.env.KubeletDials())
	}
	if !strings.Contains(string(logs), "kestrel-pod-net-ok from web") || !strings.Contains(string(logs), "inet 10.42.0.") {
		t.Errorf("client logs %q: want the web pod's page and a 10.42.0.x address", logs)
	}
	if d := k.env.KubeletDials(); len(d) == 0 || !strings.HasPrefix(d[0], "10.0.2.15:") {
		t.Errorf("the apiserver dialled the kubelet at %v, want the node's InternalIP 10.0.2.15", d)
	}
	webLogs, err := k.cs.CoreV1().Pods("default").GetLogs("web", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(webLogs), "serving") {
		t.Errorf("web logs %q, %v", webLogs, err)
	}
	k.g.contains("cat "+podDataDir+"/fetched", "kestrel-pod-net-ok from web")
	k.g.contains("mount | grep ' /var '", "ext4")
	k.g.contains("ls /var/lib/rancher/k3s/agent/containerd/", "io.containerd.snapshotter.v1.overlayfs")

	// Reboot: the node comes back Ready, the hostPath data is still there,
	// the serving pod runs again (restarted by the kubelet), and the labels
	// (removed here) are set again by the new boot.
	unlabel := []byte(`{"metadata":{"labels":{"kestrel.io/version":null,"kestrel.io/slot":null}}}`)
	if _, err := k.cs.CoreV1().Nodes().Patch(ctx, kubeNodeName, types.MergePatchType, unlabel, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	k.send("kestrel reboot")
	k.waitReboot(3 * time.Minute)
	readyAgain := k.bootReady()
	t.Logf("after reboot, boot to node Ready: %v", readyAgain.Round(time.Second))
	k.checkLabels("a")
	k.g.contains("cat "+podDataDir+"/fetched", "kestrel-pod-net-ok from web")
	ctxWeb := testenv.WaitContext(t, kubePodWait)
	for {
		p, err := k.cs.CoreV1().Pods("default").Get(ctxWeb, "web", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 &&
			p.Status.ContainerStatuses[0].Ready && p.Status.ContainerStatuses[0].State.Running != nil &&
			p.Status.ContainerStatuses[0].State.Running.StartedAt.After(before) {
			break
		}
		if ctxWeb.Err() != nil {
			t.Fatalf("web pod not running again after the reboot: %v %v", err, containerStates(p))
		}
		time.Sleep(3 * time.Second)
	}
}
