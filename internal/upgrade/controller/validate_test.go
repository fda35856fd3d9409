package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Invalid Plans get Validated=False with the reason, and nothing is
// scheduled; a valid one gets Validated=True.
func TestPlanValidationConditions(t *testing.T) {
	c := newCluster(t)
	c.nodes(2, "v1", nil)
	c.controller(nil)
	img := &plan.ContainerSpec{Image: "rancher/k3s-upgrade"}
	cases := []struct {
		name    string
		spec    plan.PlanSpec
		wantMsg string // "" means valid
	}{
		{"valid", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: img}, ""},
		{"no-image", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: &plan.ContainerSpec{}}, "spec.upgrade.image is required"},
		{"bad-selector", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: img,
			NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sometimes", Values: []string{"b"}}}}},
			"spec.nodeSelector"},
		{"drain-cordon-conflict", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: img, Cordon: boolp(false), Drain: &plan.DrainSpec{Force: true}},
			"a drain always cordons"},
		{"drain-delete-conflict", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: img,
			Drain: &plan.DrainSpec{DeleteLocalData: boolp(true), DeleteEmptydirData: boolp(true)}}, "both deleteEmptydirData and deleteLocalData"},
		{"bad-window", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: img,
			Window: &plan.TimeWindowSpec{Days: []plan.Day{"monday"}, StartTime: "25:99"}}, "spec.window"},
		{"no-version", plan.PlanSpec{Concurrency: 1, Upgrade: img}, "spec.version or spec.channel"},
		{"missing-secret", plan.PlanSpec{Concurrency: 1, Version: "v1", Upgrade: img,
			Secrets: []plan.SecretSpec{{Name: "nope", Path: "/x"}}}, "spec.secrets: nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.NodeSelector = mergeSel(c.selector(), tc.spec.NodeSelector)
			if tc.name == "valid" {
				tc.spec.Concurrency = 0 // validated, but starts nothing
			}
			p := c.createPlan(&plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Spec: tc.spec})
			got := c.waitPlan(p.Name, 20*time.Second, "Validated", func(p *plan.Plan) bool { return p.Status.Condition(plan.CondValidated) != nil })
			v := got.Status.Condition(plan.CondValidated)
			if tc.wantMsg == "" {
				if v.Status != "True" {
					t.Fatalf("Validated = %s", cond(got, plan.CondValidated))
				}
				return
			}
			if v.Status != "False" || v.Reason != ReasonError || !strings.Contains(v.Message, tc.wantMsg) {
				t.Fatalf("Validated = %s, want False/Error/...%s...", cond(got, plan.CondValidated), tc.wantMsg)
			}
			if len(got.Status.Applying) != 0 || got.Status.LatestHash != "" {
				t.Errorf("invalid plan has applying=%v hash=%q", got.Status.Applying, got.Status.LatestHash)
			}
		})
	}
	time.Sleep(time.Second)
	if j := c.jobs(); len(j) != 0 {
		t.Errorf("%d jobs created for invalid (or zero-concurrency) plans", len(j))
	}
}

// The CRD itself (as SUC's) refuses a Plan with no spec.upgrade at all.
func TestCRDRequiresUpgrade(t *testing.T) {
	c := newCluster(t)
	_, err := c.plans.Create(c.ctx, &plan.Plan{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: c.ns}, Spec: plan.PlanSpec{Version: "v1"}})
	if err == nil || !strings.Contains(err.Error(), "spec.upgrade") {
		t.Fatalf("create without spec.upgrade: err = %v, want a spec.upgrade Required error", err)
	}
}

func mergeSel(base, extra *metav1.LabelSelector) *metav1.LabelSelector {
	if extra != nil {
		base.MatchExpressions = append(base.MatchExpressions, extra.MatchExpressions...)
	}
	return base
}
