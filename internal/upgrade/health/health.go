// Package health is the gate a Kestrel upgrade passes on each node after
// its upgrade Job completed: the node must have rebooted, report the Plan's
// version and be Ready again, within a deadline. A node that comes back on
// another version, or that says it rolled back from this one, fails.
//
// It is a pure function of the Node object, the version, the node's boot ID
// when the Job was made, the Job's completion time and the clock, so it is
// level-triggered: a controller restarted mid-rollout reaches the same
// verdict from the same objects.
//
// Limits: the node's version comes from label kestrel.io/version, else from
// status.nodeInfo.osImage containing the version as a whole word; a node
// that reports neither is only ever judged by the deadline.
package health

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Node labels and annotations the gate reads (written by Kestrel nodes).
const (
	LabelVersion      = "kestrel.io/version"
	KeyRolledBackFrom = "kestrel.io/rolled-back-from"
)

// Verdict of the gate.
type Verdict int

// Verdicts.
const (
	Waiting Verdict = iota
	Healthy
	Failed
)

func (v Verdict) String() string {
	return [...]string{"Waiting", "Healthy", "Failed"}[v]
}

// Reasons for Failed.
const (
	ReasonRolledBack = "RolledBack"
	ReasonOldVersion = "CameBackOnOldVersion"
	ReasonTimeout    = "HealthDeadlineExceeded"
)

// Gate holds the gate's tunables.
type Gate struct {
	// Deadline after the Job completed for the node to come back healthy.
	Deadline time.Duration
	// Settle is how long a rebooted, Ready node may still show the old
	// version before that counts as a failure (labels may trail status).
	Settle time.Duration
}

// Result is a verdict with its reason and a message naming the node.
type Result struct {
	Verdict Verdict
	Reason  string
	Message string
	// RecheckAt is when the verdict may change without any event (a
	// deadline or settle time running out); zero when not Waiting.
	RecheckAt time.Time
}

// Evaluate judges node for version. bootID is the node's boot ID when the
// Job was made ("" if unknown), jobDone when the Job completed.
func (g Gate) Evaluate(node *corev1.Node, version, bootID string, jobDone, now time.Time) Result {
	if from, ok := rolledBackFrom(node); ok && (from == "" || SameVersion(from, version)) {
		return Result{Verdict: Failed, Reason: ReasonRolledBack,
			Message: fmt.Sprintf("node %s rolled back from %s", node.Name, version)}
	}
	have := NodeVersion(node, version)
	ready, readySince := readyCondition(node)
	rebooted := (bootID != "" && node.Status.NodeInfo.BootID != "" && node.Status.NodeInfo.BootID != bootID) ||
		(ready && readySince.After(jobDone))
	deadline := jobDone.Add(g.Deadline)
	if rebooted && ready {
		if SameVersion(have, version) {
			return Result{Verdict: Healthy, Message: fmt.Sprintf("node %s is Ready on %s", node.Name, version)}
		}
		settled := readySince.Add(g.Settle)
		if !now.Before(settled) {
			old := have
			if old == "" {
				old = "an unknown version"
			}
			return Result{Verdict: Failed, Reason: ReasonOldVersion,
				Message: fmt.Sprintf("node %s rebooted and is Ready on %s, not %s", node.Name, old, version)}
		}
		if settled.Before(deadline) {
			deadline = settled
		}
	}
	if !now.Before(jobDone.Add(g.Deadline)) {
		return Result{Verdict: Failed, Reason: ReasonTimeout,
			Message: fmt.Sprintf("node %s not Ready on %s within %s of its upgrade job completing (ready=%t, rebooted=%t, version=%q)",
				node.Name, version, g.Deadline, ready, rebooted, have)}
	}
	return Result{Verdict: Waiting, RecheckAt: deadline}
}

// NodeVersion is the version the node reports: label kestrel.io/version,
// else want itself when the OS image names it, else the OS image.
func NodeVersion(node *corev1.Node, want string) string {
	if v := node.Labels[LabelVersion]; v != "" {
		return v
	}
	img := node.Status.NodeInfo.OSImage
	for _, f := range strings.Fields(img) {
		if SameVersion(f, want) {
			return want
		}
	}
	return ""
}

func rolledBackFrom(node *corev1.Node) (string, bool) {
	if v, ok := node.Annotations[KeyRolledBackFrom]; ok {
		return v, true
	}
	v, ok := node.Labels[KeyRolledBackFrom]
	return v, ok
}

// SameVersion compares versions the way tags and labels munge them (`+`
// as `-`), with or without a leading v; an empty version matches nothing.
func SameVersion(a, b string) bool {
	norm := func(s string) string {
		return strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), "+", "-"), "v")
	}
	return a != "" && norm(a) == norm(b)
}

func readyCondition(node *corev1.Node) (bool, time.Time) {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}
