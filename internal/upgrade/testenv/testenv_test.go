package testenv

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestStartRestart(t *testing.T) {
	e := StartT(t)
	cs := kubernetes.NewForConfigOrDie(e.Config)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get default namespace: %v", err)
	}
	e.StopAPIServer()
	if err := e.StartAPIServer(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get default namespace after restart with the old client: %v", err)
	}
}
