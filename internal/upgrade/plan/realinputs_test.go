package plan_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kestrel-os/kestrel/internal/realinputs"
	"github.com/kestrel-os/kestrel/internal/upgrade/controller"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	"github.com/kestrel-os/kestrel/internal/upgrade/testenv"
)

// planVerdicts: for each Plan of the corpus (file/name), "" when SUC
// would apply it, or the error plan.Validate must give (SUC's own
// message where SUC has one).
var planVerdicts = map[string]string{
	"plans/k3s-docs-no-version.yaml/server-plan":       plan.ErrNoVersion.Error(),
	"plans/k3s-docs-server-agent.yaml/server-plan":     "",
	"plans/k3s-docs-server-agent.yaml/agent-plan":      "",
	"plans/k3s-docs-window.yaml/server-plan":           "",
	"plans/kube-hetzner-plans.yaml/k3s-agent":          "",
	"plans/kube-hetzner-plans.yaml/k3s-server":         "",
	"plans/kured-format-window.yaml/agent-plan":        "",
	"plans/suc-example-k3s-upgrade.yaml/k3s-server":    "",
	"plans/suc-example-k3s-upgrade.yaml/k3s-agent":     "",
	"plans/suc-example-linux-kernel-aws.yaml/kernel":   "",
	"plans/suc-example-opensuse-microos.yaml/microos":  "",
	"plans/suc-example-ubuntu-bionic.yaml/bionic":      "",
	"plans/suc-issue342-window-berlin.yaml/k3s-agent":  "",
	"plans/suc-readme-drain-conflict.yaml/k3os-latest": plan.ErrDrainDeleteConflict.Error(),
	"plans/suc-readme-k3os-latest.yaml/k3os-latest":    "",
	"k3os-latest-plan.yaml/k3os-latest":                "",
}

// windowChecks: moments each corpus window must contain or not.
var windowChecks = map[string][]struct {
	at   string
	open bool
}{
	// 2026-11-23 is a Monday.
	"plans/k3s-docs-window.yaml/server-plan": {{"2026-11-23T19:30:00Z", true}, {"2026-11-23T21:01:00Z", false}, {"2026-11-22T19:30:00Z", false}},
	// 9am-5pm in Los Angeles (UTC-8 in November).
	"plans/kured-format-window.yaml/agent-plan": {{"2026-11-23T17:00:00Z", true}, {"2026-11-24T00:59:00Z", true}, {"2026-11-24T01:01:00Z", false}, {"2026-11-23T16:59:00Z", false}},
	// Saturday 00:15-06:15 in Berlin (UTC+1 in November): 2026-11-28 is a Saturday.
	"plans/suc-issue342-window-berlin.yaml/k3s-agent": {{"2026-11-27T23:15:00Z", true}, {"2026-11-27T23:14:00Z", false}, {"2026-11-28T05:15:00Z", true}, {"2026-11-28T05:16:00Z", false}},
}

// TestRealPlans sends every Plan of the real-inputs corpus to a real
// kube-apiserver holding Kestrel's Plan CRD, as kubectl apply would (the
// CRD's schema validates and prunes it), then validates what the
// apiserver stored with plan.Validate and checks the windows.
func TestRealPlans(t *testing.T) {
	files, err := realinputs.Files("plans", ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	top, err := realinputs.Files(".", ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range top {
		if bytes.Contains(f.Data, []byte("kind: Plan")) {
			files = append(files, f)
		}
	}
	env := testenv.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := controller.InstallCRD(ctx, env.Config); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	plans := dyn.Resource(schema.GroupVersionResource{Group: plan.SchemeGroupVersion.Group, Version: plan.SchemeGroupVersion.Version, Resource: "plans"})
	seen := map[string]bool{}
	for _, f := range files {
		for i, doc := range bytes.Split(f.Data, []byte("\n---")) {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("%s document %d: %v", f.Name, i, err)
			}
			if u.GetKind() != "Plan" {
				continue
			}
			id := f.Name + "/" + u.GetName()
			seen[id] = true
			t.Run(id, func(t *testing.T) {
				want, ok := planVerdicts[id]
				if !ok {
					t.Fatalf("no verdict for %s: add one to planVerdicts", id)
				}
				ns := u.GetNamespace()
				if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
					t.Fatal(err)
				}
				u.SetName(u.GetName() + "-" + strings.NewReplacer("/", "-", ".", "-", "_", "-").Replace(strings.TrimSuffix(f.Name, ".yaml")))
				stored, err := plans.Namespace(ns).Create(ctx, &u, metav1.CreateOptions{FieldValidation: "Strict"})
				if err != nil {
					t.Fatalf("the apiserver refused the Plan (CRD schema): %v", err)
				}
				var p plan.Plan
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(stored.Object, &p); err != nil {
					t.Fatal(err)
				}
				err = plan.Validate(&p)
				switch {
				case want == "" && err != nil:
					t.Fatalf("Validate: %v", err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Fatalf("Validate: %v, want %q", err, want)
				}
				for _, c := range windowChecks[id] {
					w, err := plan.ParseWindow(p.Spec.Window)
					if err != nil {
						t.Fatal(err)
					}
					at, _ := time.Parse(time.RFC3339, c.at)
					if got := w.Contains(at); got != c.open {
						t.Errorf("%s: open at %s = %t, want %t", w, c.at, got, c.open)
					}
				}
			})
		}
	}
	for id := range planVerdicts {
		if !seen[id] {
			t.Errorf("verdict for %s, which is not in the corpus", id)
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("ran out of time talking to the apiserver")
	}
}
