package health

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEvaluate(t *testing.T) {
	jobDone := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	g := Gate{Deadline: 10 * time.Minute, Settle: 30 * time.Second}
	node := func(ready bool, readySince time.Time, bootID string, labels, anns map[string]string, osImage string) *corev1.Node {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: labels, Annotations: anns},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, LastTransitionTime: metav1.NewTime(readySince)}},
				NodeInfo:   corev1.NodeSystemInfo{BootID: bootID, OSImage: osImage},
			},
		}
	}
	after := jobDone.Add(time.Minute)
	before := jobDone.Add(-time.Hour)
	tests := []struct {
		name   string
		n      *corev1.Node
		now    time.Time
		want   Verdict
		reason string
	}{
		{"still up on old boot", node(true, before, "b0", map[string]string{LabelVersion: "v1"}, nil, ""), after, Waiting, ""},
		{"rebooting", node(false, after, "b0", map[string]string{LabelVersion: "v1"}, nil, ""), after, Waiting, ""},
		{"back on new version", node(true, after, "b1", map[string]string{LabelVersion: "v2"}, nil, ""), after.Add(time.Second), Healthy, ""},
		{"new version by OS image", node(true, after, "b1", nil, nil, "Kestrel v2 (arm64)"), after, Healthy, ""},
		{"build metadata munged", node(true, after, "b1", map[string]string{LabelVersion: "v2+rc1"}, nil, ""), after, Healthy, ""},
		{"no boot id: ready transition counts", node(true, after, "", map[string]string{LabelVersion: "v2"}, nil, ""), after, Healthy, ""},
		{"rolled back annotation", node(true, after, "b1", map[string]string{LabelVersion: "v1"}, map[string]string{KeyRolledBackFrom: "v2"}, ""), after, Failed, ReasonRolledBack},
		{"rolled back label", node(false, after, "b0", map[string]string{LabelVersion: "v1", KeyRolledBackFrom: "v2"}, nil, ""), after, Failed, ReasonRolledBack},
		{"rolled back from another version", node(true, after, "b1", map[string]string{LabelVersion: "v2"}, map[string]string{KeyRolledBackFrom: "v0"}, ""), after, Healthy, ""},
		{"old version, settling", node(true, after, "b1", map[string]string{LabelVersion: "v1"}, nil, ""), after.Add(10 * time.Second), Waiting, ""},
		{"old version, settled", node(true, after, "b1", map[string]string{LabelVersion: "v1"}, nil, ""), after.Add(time.Minute), Failed, ReasonOldVersion},
		{"deadline", node(false, after, "b0", nil, nil, ""), jobDone.Add(10 * time.Minute), Failed, ReasonTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := "v2"
			if strings.Contains(tc.name, "munged") {
				want = "v2-rc1"
			}
			r := g.Evaluate(tc.n, want, "b0", jobDone, tc.now)
			if r.Verdict != tc.want || r.Reason != tc.reason {
				t.Fatalf("Evaluate = %s/%s (%s), want %s/%s", r.Verdict, r.Reason, r.Message, tc.want, tc.reason)
			}
			if r.Verdict == Failed && !strings.Contains(r.Message, "n1") {
				t.Errorf("message %q does not name the node", r.Message)
			}
			if r.Verdict == Waiting && (r.RecheckAt.IsZero() || r.RecheckAt.After(jobDone.Add(g.Deadline))) {
				t.Errorf("RecheckAt = %s", r.RecheckAt)
			}
		})
	}
}
