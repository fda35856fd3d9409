package nodelabels

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
)

// TestApplyAgainstAPIServer patches a Node on a real kube-apiserver: the
// Node registers only after Apply started (it must retry), the labels and
// the annotation land, and a later boot without a rollback removes the
// annotation and moves the labels on.
func TestApplyAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	env := testenv.StartT(t)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := env.WriteKubeconfig(kc); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(env.Config)
	ctx := testenv.WaitContext(t, time.Minute)
	name := "edge-1"

	done := make(chan error, 1)
	go func() {
		done <- Apply(ctx, kc, name, Want{Version: "0.2.0", Slot: "b", RolledBackFrom: "0.3.0"}, 100*time.Millisecond)
	}()
	time.Sleep(300 * time.Millisecond) // Apply's first tries find no Node
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{"kubernetes.io/hostname": name}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[LabelVersion] != "0.2.0" || n.Labels[LabelSlot] != "b" || n.Annotations[AnnotationRolledBack] != "0.3.0" || n.Labels["kubernetes.io/hostname"] != name {
		t.Fatalf("after the first boot: labels %v annotations %v", n.Labels, n.Annotations)
	}

	if err := Apply(ctx, kc, name, Want{Version: "0.3.1", Slot: "a"}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if _, ok := n.Annotations[AnnotationRolledBack]; ok || n.Labels[LabelVersion] != "0.3.1" || n.Labels[LabelSlot] != "a" {
		t.Fatalf("after the second boot: labels %v annotations %v", n.Labels, n.Annotations)
	}
}

func TestApplyGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := Apply(ctx, filepath.Join(t.TempDir(), "missing"), "n", Want{}, 10*time.Millisecond); err == nil {
		t.Fatal("Apply with a missing kubeconfig succeeded")
	}
}
