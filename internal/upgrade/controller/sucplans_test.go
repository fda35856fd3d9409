package controller

import (
	"context"
	"encoding/json"
	"github.com/kestrel-os/kestrel/internal/upgrade/channel"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/job"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

var planGVR = schema.GroupVersionResource{Group: plan.Group, Version: plan.Version, Resource: plan.Resource}

// readPlans reads a multi-document YAML file of Plans, each of which the
// Go types must decode strictly (they know every field the file uses).
func readPlans(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	return readYAMLDocs(t, path, func(doc []byte) {
		var strict plan.Plan
		if err := yaml.UnmarshalStrict(doc, &strict); err != nil {
			t.Fatalf("%s: strict decode: %v", path, err)
		}
	})
}

// Existing SUC Plans (k3OS's k3os-latest, k3s's server and agent plans) are
// accepted by the CRD unchanged (nothing pruned), validated, and rolled out
// with SUC's semantics: the selector (opt-in label, live nodes excluded,
// control-plane split), channel resolution, drain or cordon, the image
// tagged with the resolved version.
func TestSUCPlanFixtures(t *testing.T) {
	c := newCluster(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "k3os"):
			http.Redirect(w, r, "/rancher/k3os/releases/tag/v0.21.5-k3s2r1", http.StatusFound)
		default:
			http.Redirect(w, r, "/k3s-io/k3s/releases/tag/v1.30.4+k3s1", http.StatusFound)
		}
	}))
	defer srv.Close()
	dyn := dynamic.NewForConfigOrDie(env.Config)

	// Nodes: k3os-latest opted in (two), a live-booted one (opted in, must
	// be skipped), one k3s server, two k3s agents.
	k3os := c.nodes(3, "v0.20.0", map[string]string{plan.LabelPlanName("k3os-latest"): "enabled", "k3os.io/mode": "local"})
	if err := setNodeLabel(c, k3os[2], "k3os.io/mode", "live"); err != nil {
		t.Fatal(err)
	}
	c.prefix += "s-"
	server := c.nodes(1, "v1.29", map[string]string{"node-role.kubernetes.io/control-plane": "true"})
	c.prefix += "a-"
	agents := c.nodes(2, "v1.29", nil)
	c.controller(nil)

	var created []string
	for _, f := range []string{"testdata/k3os-latest.yaml", "testdata/k3s-upgrade.yaml"} {
		for _, u := range readPlans(t, f) {
			u.SetNamespace(c.ns)
			// Point the channel at the local server, and confine the
			// selector to this test's nodes (the shared apiserver holds
			// other tests' nodes too).
			ch, _, _ := unstructured.NestedString(u.Object, "spec", "channel")
			_ = unstructured.SetNestedField(u.Object, srv.URL+"/"+strings.TrimPrefix(ch, "https://"), "spec", "channel")
			_ = unstructured.SetNestedStringMap(u.Object, map[string]string{"kestrel.test/run": c.run}, "spec", "nodeSelector", "matchLabels")
			// The local channel server is plain http: opt in, as a lab would.
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[channel.AnnotationAllowHTTP] = "true"
			u.SetAnnotations(ann)
			want, _, _ := unstructured.NestedMap(u.Object, "spec")
			got, err := dyn.Resource(planGVR).Namespace(c.ns).Create(context.Background(), u, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s %s: apiserver refused a SUC plan: %v", f, u.GetName(), err)
			}
			spec, _, _ := unstructured.NestedMap(got.Object, "spec")
			if gj, wj := mustJSON(t, spec), mustJSON(t, want); gj != wj {
				t.Errorf("%s %s: spec changed by the CRD (pruned?):\n got %v\nwant %v", f, u.GetName(), spec, want)
			}
			created = append(created, u.GetName())
		}
	}
	s := c.sim("", "", jobOnly, 100*time.Millisecond)
	_ = s
	for _, name := range created {
		got := c.waitPlan(name, 60*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
		if !got.Status.IsTrue(plan.CondValidated) {
			t.Errorf("%s: Validated = %s", name, cond(got, plan.CondValidated))
		}
	}
	checkDone := func(planName, version string, nodes []string, image string) {
		t.Helper()
		p, err := c.plans.Get(c.ctx, c.ns, planName)
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.LatestVersion != version {
			t.Errorf("%s: latestVersion %q, want %q", planName, p.Status.LatestVersion, version)
		}
		for _, n := range nodes {
			if c.node(n).Labels[plan.LabelPlanName(planName)] != p.Status.LatestHash {
				t.Errorf("%s: node %s not upgraded", planName, n)
			}
		}
		for _, j := range c.jobs() {
			if j.Labels[plan.LabelPlan] == planName && j.Spec.Template.Spec.Containers[0].Image != image {
				t.Errorf("%s: job image %q, want %q", planName, j.Spec.Template.Spec.Containers[0].Image, image)
			}
		}
	}
	checkDone("k3os-latest", "v0.21.5-k3s2r1", k3os[:2], "rancher/k3os:v0.21.5-k3s2r1")
	checkDone("server-plan", "v1.30.4-k3s1", server, "rancher/k3s-upgrade:v1.30.4-k3s1")
	checkDone("agent-plan", "v1.30.4-k3s1", agents, "rancher/k3s-upgrade:v1.30.4-k3s1")
	if c.node(k3os[2]).Labels[plan.LabelPlanName("k3os-latest")] != "enabled" {
		t.Errorf("live-booted node %s was upgraded", k3os[2])
	}
	for _, j := range c.jobs() {
		n := j.Labels[plan.LabelNode]
		if n == k3os[2] && j.Labels[plan.LabelPlan] == "k3os-latest" {
			t.Errorf("job for the live node: %s", j.Name)
		}
		if j.Labels[plan.LabelPlan] == "agent-plan" && (len(j.Spec.Template.Spec.InitContainers) != 1 ||
			strings.Join(j.Spec.Template.Spec.InitContainers[0].Args, " ") != "prepare server-plan") {
			t.Errorf("agent job prepare step: %+v", j.Spec.Template.Spec.InitContainers)
		}
		if job.Paused(&j) {
			t.Errorf("job %s never let run", j.Name)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
