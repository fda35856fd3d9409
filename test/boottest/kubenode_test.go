package boottest

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/k3s/nodelabels"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
	"github.com/kestrel-os/kestrel/test/vm"
)

// The real-node tests: a TEST image (`-k3s kubelet`, out/test-kubelet) whose
// /usr/bin/k3s is test/k3s-kubelet, a stand-in that runs the UPSTREAM
// kubelet and containerd (scripts/k8s-node-bins.sh) with Debian's runc and
// CNI plugins. The control plane is the real kube-apiserver + etcd of
// internal/upgrade/testenv on the host, which the guest reaches at
// 10.0.2.2; the apiserver reaches the kubelet (logs) through testenv's
// CONNECT proxy to a port qemu forwards to the guest's 10250. Real k3s is
// not run here.

const (
	kubeNodeName = "kube1"
	// kubeReadyWait bounds boot-to-Ready under TCG on a shared machine.
	kubeReadyWait = 12 * time.Minute
	kubePodWait   = 8 * time.Minute
	podDataDir    = "/var/lib/kestrel-test-pod"
)

// kubeNode is the host's apiserver and one guest node.
type kubeNode struct {
	node
	env *testenv.Env
	cs  *kubernetes.Clientset
	img *Image
}

// kubeNodeConfig is the node's config.yaml: its name, the kubelet's
// credentials and the apiserver's CA via write_files (k3s's own paths, so
// nodelabels finds them), and the agent role pointing at the host.
func kubeNodeConfig(t testing.TB, e *testenv.Env, healthTimeout string) string {
	kc, err := e.NodeKubeconfig(kubeNodeName, e.GuestServer())
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf(`hostname: %s
write_files:
- path: %s
  encoding: b64
  permissions: "0600"
  content: %s
- path: /var/lib/rancher/k3s/agent/client-ca.crt
  encoding: b64
  permissions: "0644"
  content: %s
kestrel:
  k3s:
    role: agent
    server_url: %s
    token: unused-the-kubelet-stand-in-has-its-kubeconfig
    health_timeout: %s
`, kubeNodeName, nodelabels.KubeletKubeconfig, b64(kc), b64(e.CACert()), e.GuestServer(), healthTimeout)
}

// startKubeNode starts the apiserver and prepares the test-kubelet image
// (not booted yet).
func startKubeNode(t *testing.T) *kubeNode { return startKubeNodeWith(t, testenv.Options{}, "10m") }

// startKubeNodeWith is startKubeNode with apiserver options (KubeletAddr
// is set here) and the node's kestrel.k3s.health_timeout.
func startKubeNodeWith(t testing.TB, opt testenv.Options, healthTimeout string) *kubeNode {
	t.Helper()
	if _, err := testenv.BinDir(); err != nil {
		t.Skipf("skipping: needs the real kube-apiserver: %v", err)
	}
	img := buildImageWith(t, imageOpts{Name: "test-kubelet", K3s: "kubelet"})
	if k, _ := img.Manifest["k3s"].(map[string]any); k == nil || k["node_runtime"] != true {
		t.Fatalf("test image has no node runtime in its manifest: %v", img.Manifest["k3s"])
	}
	port, err := freeHostPort()
	if err != nil {
		t.Fatal(err)
	}
	opt.KubeletAddr = fmt.Sprintf("127.0.0.1:%d", port)
	e, err := testenv.StartWith(t.TempDir(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	dir := t.TempDir()
	t.Cleanup(func() { // keep the console and the apiserver log of a failed run
		if t.Failed() {
			logs := filepath.Join(img.Dir, "logs")
			os.MkdirAll(logs, 0o755)
			for _, f := range []struct{ from, to string }{
				{filepath.Join(dir, "console.log"), t.Name() + ".console.log"},
				{filepath.Join(e.Dir, "kube-apiserver.log"), t.Name() + ".kube-apiserver.log"},
				{filepath.Join(e.Dir, "kube-controller-manager.log"), t.Name() + ".kube-controller-manager.log"},
				{filepath.Join(e.Dir, "kube-scheduler.log"), t.Name() + ".kube-scheduler.log"},
			} {
				if data, err := os.ReadFile(f.from); err == nil {
					os.WriteFile(filepath.Join(logs, f.to), data, 0o644)
					t.Logf("kept %s", filepath.Join(logs, f.to))
				}
			}
		}
	})
	disk := withESPConfig(t, img, dir, kubeNodeConfig(t, e, healthTimeout))
	k := &kubeNode{env: e, cs: kubernetes.NewForConfigOrDie(e.Config), img: img}
	k.node = node{t: t, cfg: vm.Config{Disk: disk, DiskSize: "6G", Dir: dir, Memory: 2048,
		HostFwd: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:10250", port)}}}
	return k
}

func freeHostPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// bootReady boots the node and waits for its boot verdict and for the Node
// to be Ready with a heartbeat after since; it returns the time from qemu's
// start to Ready (guest time under TCG, noisy on a shared machine).
func (k *kubeNode) bootReady() time.Duration {
	k.t.Helper()
	start := time.Now()
	k.boot()
	if h := k.g.waitHealth(kubeReadyWait); h.State != boothealth.Good {
		k.t.Fatalf("boot health %q, want good\n--- k3s log ---\n%s", h.String(), k.g.run("kestrel logs k3s 2>&1 | tail -60"))
	}
	k.waitNodeReady(start)
	return time.Since(start)
}

func (k *kubeNode) waitNodeReady(since time.Time) {
	k.t.Helper()
	if err := waitNodeReady(testenv.WaitContext(k.t, kubeReadyWait), k.cs, since); err != nil {
		k.t.Fatalf("%v\n--- k3s log ---\n%s", err, k.g.run("kestrel logs k3s 2>&1 | tail -60"))
	}
}

// waitNodeReady waits until the Node is Ready with a heartbeat after since.
func waitNodeReady(ctx context.Context, cs *kubernetes.Clientset, since time.Time) error {
	var last string
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, kubeNodeName, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					last = fmt.Sprintf("Ready=%s (%s: %s) heartbeat %v", c.Status, c.Reason, c.Message, c.LastHeartbeatTime)
					if c.Status == corev1.ConditionTrue && c.LastHeartbeatTime.Time.After(since.Add(-time.Second)) {
						return nil
					}
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready: %s", kubeNodeName, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// waitPod waits until pod is in one of phases and returns it.
func (k *kubeNode) waitPod(name string, phases ...corev1.PodPhase) *corev1.Pod {
	k.t.Helper()
	ctx := testenv.WaitContext(k.t, kubePodWait)
	var last string
	for {
		p, err := k.cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, ph := range phases {
				if p.Status.Phase == ph {
					return p
				}
			}
			last = fmt.Sprintf("phase %s, %s", p.Status.Phase, containerStates(p))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			k.t.Fatalf("pod %s not %v: %s\n--- k3s log ---\n%s", name, phases, last, k.g.run("kestrel logs k3s 2>&1 | tail -40"))
		case <-time.After(3 * time.Second):
		}
	}
}

func containerStates(p *corev1.Pod) string {
	var s []string
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Waiting != nil:
			s = append(s, c.Name+" waiting: "+c.State.Waiting.Reason+" "+c.State.Waiting.Message)
		case c.State.Terminated != nil:
			s = append(s, fmt.Sprintf("%s terminated: %s exit %d", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode))
		case c.State.Running != nil:
			s = append(s, c.Name+" running")
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s = append(s, string(c.Type)+": "+c.Message)
		}
	}
	return strings.Join(s, "; ")
}

// testPod is a busybox pod of the test image on the node (no scheduler
// runs: the pod names its node), no service account, the node's DNS.
func testPod(name string, restart corev1.RestartPolicy, script string, env ...corev1.EnvVar) *corev1.Pod {
	no := false
	hostPathType := corev1.HostPathDirectoryOrCreate
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName: kubeNodeName, RestartPolicy: restart, DNSPolicy: corev1.DNSDefault,
			AutomountServiceAccountToken: &no, EnableServiceLinks: &no,
			Containers: []corev1.Container{{
				Name: name, Image: "kestrel.test/busybox:1", ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/sh", "-c", script}, Env: env,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: podDataDir, Type: &hostPathType}}}},
		},
	}
}

// checkLabels checks the labels every boot sets with the kubelet's own
// credentials (nodelabels, through NodeRestriction).
func (k *kubeNode) checkLabels(slot string) {
	k.t.Helper()
	want := map[string]string{nodelabels.LabelVersion: k3sconfig.VersionLabelValue(testVersion), nodelabels.LabelSlot: slot}
	ctx := testenv.WaitContext(k.t, 2*time.Minute)
	var got map[string]string
	for {
		n, err := k.cs.CoreV1().Nodes().Get(ctx, kubeNodeName, metav1.GetOptions{})
		if err == nil {
			got = n.Labels
			if got[nodelabels.LabelVersion] == want[nodelabels.LabelVersion] && got[nodelabels.LabelSlot] == slot {
				return
			}
		}
		select {
		case <-ctx.Done():
			k.t.Fatalf("node labels %v, want %v", got, want)
		case <-time.After(2 * time.Second):
		}
	}
}
