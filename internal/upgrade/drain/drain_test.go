package drain

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func bp(b bool) *bool { return &b }

// Which pods a drain takes, leaves or refuses, on a real apiserver.
func TestDrain(t *testing.T) {
	env := testenv.StartT(t)
	cs := kubernetes.NewForConfigOrDie(env.Config)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	RetryInterval = 100 * time.Millisecond
	type pod struct {
		name, owner string
		emptyDir    bool
		upgradeJob  bool
	}
	tests := []struct {
		name   string
		spec   *plan.DrainSpec
		pods   []pod
		gone   []string
		kept   []string
		errHas string
	}{
		{"managed pods evicted, DaemonSet and upgrade pods kept", nil,
			[]pod{{name: "rs", owner: "ReplicaSet"}, {name: "ds", owner: "DaemonSet"}, {name: "up", owner: "Job", upgradeJob: true}},
			[]string{"rs"}, []string{"ds", "up"}, ""},
		{"unmanaged pod needs force", &plan.DrainSpec{},
			[]pod{{name: "bare"}}, nil, []string{"bare"}, "needs force"},
		{"force takes unmanaged pods", &plan.DrainSpec{Force: true},
			[]pod{{name: "bare"}}, []string{"bare"}, nil, ""},
		{"emptyDir refused when deleteEmptydirData is false", &plan.DrainSpec{DeleteEmptydirData: bp(false)},
			[]pod{{name: "cache", owner: "ReplicaSet", emptyDir: true}}, nil, []string{"cache"}, "emptyDir"},
		{"DaemonSet pods refused when not ignored", &plan.DrainSpec{IgnoreDaemonSets: bp(false)},
			[]pod{{name: "ds", owner: "DaemonSet"}}, nil, []string{"ds"}, "DaemonSet"},
		{"disableEviction deletes", &plan.DrainSpec{DisableEviction: true},
			[]pod{{name: "rs", owner: "ReplicaSet"}}, []string{"rs"}, nil, ""},
	}
	zero := int64(0)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := "d" + string(rune('a'+i))
			node := "drain-node-" + string(rune('a'+i))
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.pods {
				obj := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{}},
					Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &zero,
						Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
				}
				if p.owner != "" {
					obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: p.owner, Name: "o",
						UID: "00000000-0000-0000-0000-000000000001", Controller: bp(true)}}
				}
				if p.emptyDir {
					obj.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
				}
				if p.upgradeJob {
					obj.Labels[plan.LabelController] = "kestrel-upgrade-controller"
				}
				if _, err := cs.CoreV1().Pods(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			err := Drain(ctx, cs, node, tc.spec)
			if tc.errHas == "" && err != nil {
				t.Fatalf("Drain: %v", err)
			}
			if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Fatalf("Drain err = %v, want %q", err, tc.errHas)
			}
			n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err != nil || !n.Spec.Unschedulable {
				t.Errorf("node not cordoned (%v)", err)
			}
			for _, name := range tc.gone {
				if _, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("pod %s still there (%v)", name, err)
				}
			}
			for _, name := range tc.kept {
				if _, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
					t.Errorf("pod %s gone: %v", name, err)
				}
			}
			if err := Uncordon(ctx, cs, node); err != nil {
				t.Fatal(err)
			}
		})
	}
}
