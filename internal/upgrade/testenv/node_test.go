package testenv

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestNodeCredentialsAndKubeletProxy checks what a real kubelet in a qemu
// guest relies on: a node's own credentials register and label its Node
// but not another's (Node authorizer + NodeRestriction), and the
// apiserver's kubelet connections (here: pod logs) go through the proxy
// to KubeletAddr with the admin client certificate. The "kubelet" is a
// TLS server answering the one logs request; the real one is in the boot
// tests (test/boottest/kubenode_test.go).
func TestNodeCredentialsAndKubeletProxy(t *testing.T) {
	var gotPath string
	var gotClient string
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		if len(r.TLS.PeerCertificates) > 0 {
			gotClient = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		w.Write([]byte("hello from the pod\n"))
	}))
	kubelet.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	kubelet.StartTLS()
	defer kubelet.Close()

	if _, err := BinDir(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	e, err := StartWith(t.TempDir(), Options{KubeletAddr: kubelet.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	ctx := context.Background()

	kc, err := e.NodeKubeconfig("node1", e.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	nodeCfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	nodeCS := kubernetes.NewForConfigOrDie(nodeCfg)
	admin := kubernetes.NewForConfigOrDie(e.Config)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}
	if _, err := nodeCS.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("node1 registers itself: %v", err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"metadata":{"labels":{"kestrel.io/version":"v1"}}}`)
	if _, err := nodeCS.CoreV1().Nodes().Patch(ctx, "node1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("node1 labels itself kestrel.io/version: %v", err)
	}
	if _, err := nodeCS.CoreV1().Nodes().Patch(ctx, "node2", types.MergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 labelling node2: got %v, want Forbidden", err)
	}
	bad := []byte(`{"metadata":{"labels":{"node-restriction.kubernetes.io/x":"y"}}}`)
	if _, err := nodeCS.CoreV1().Nodes().Patch(ctx, "node1", types.MergePatchType, bad, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 setting a node-restriction.kubernetes.io label: got %v, want Forbidden", err)
	}

	// The node's address is one the host cannot reach; the proxy takes it.
	node1, err := admin.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(kubelet.Listener.Addr().String())
	portNum, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	node1.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.2.15"}}
	node1.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(portNum)
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, node1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if _, err := admin.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	logs, err := admin.CoreV1().Pods("default").GetLogs("p", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("pod logs through the kubelet proxy: %v (dials %v)", err, e.KubeletDials())
	}
	if string(logs) != "hello from the pod\n" {
		t.Errorf("logs = %q", logs)
	}
	if !strings.HasPrefix(gotPath, "/containerLogs/default/p/c") {
		t.Errorf("kubelet asked for %q, want /containerLogs/default/p/c", gotPath)
	}
	if gotClient != "kestrel-admin" {
		t.Errorf("apiserver's client certificate at the kubelet: CN %q, want kestrel-admin", gotClient)
	}
	if d := e.KubeletDials(); len(d) == 0 || d[0] != "10.0.2.15:"+port {
		t.Errorf("proxy asked for %v, want 10.0.2.15:%s first", d, port)
	}
}

// TestControllersScheduleAJob: with Options.Controllers the Job
// controller makes a Job's pod and the scheduler binds it to a Ready node.
func TestControllersScheduleAJob(t *testing.T) {
	if _, err := BinDir(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	bins := filepath.Join(filepath.Dir(mustBinDir(t)), "k8s-node-bins")
	if !isExec(filepath.Join(bins, "kube-scheduler")) {
		t.Skipf("skipping: no kube-controller-manager/kube-scheduler in %s (scripts/k8s-node-bins.sh)", bins)
	}
	e, err := StartWith(t.TempDir(), Options{Controllers: true, ControllerBins: bins})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	ctx := WaitContext(t, 2*time.Minute)
	cs := kubernetes.NewForConfigOrDie(e.Config)
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi"), corev1.ResourcePods: resource.MustParse("10")}
	n.Status = corev1.NodeStatus{Capacity: res, Allocatable: res,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "default"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
	if _, err := cs.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "job-name=j"})
		if err == nil && len(pods.Items) == 1 && pods.Items[0].Spec.NodeName == "n1" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no pod of the Job bound to n1: %v %v", pods, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func mustBinDir(t *testing.T) string {
	d, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
