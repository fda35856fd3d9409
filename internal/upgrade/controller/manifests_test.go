package controller

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"github.com/kestrel-os/kestrel/internal/upgrade/channel"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/health"
	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite generated manifests")

const manifestDir = "../../../manifests/upgrade-controller"

// crd.yaml is exactly plan.CRDObject(); `go test -run TestCRDManifest -update`
// regenerates it.
func TestCRDManifest(t *testing.T) {
	b, err := yaml.Marshal(plan.CRDObject())
	if err != nil {
		t.Fatal(err)
	}
	// Drop the empty status and creationTimestamp the typed object carries.
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	b, err = yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte("# Generated from internal/upgrade/plan.CRDObject by `go test ./internal/upgrade/controller -run TestCRDManifest -update`.\n"), b...)
	path := filepath.Join(manifestDir, "crd.yaml")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; run go test ./internal/upgrade/controller -run TestCRDManifest -update", path)
	}
}

// No rule grants a wildcard, and nothing binds cluster-admin.
func TestRBACLeastPrivilege(t *testing.T) {
	for _, u := range readManifests(t, "rbac.yaml") {
		if ref, ok, _ := unstructured.NestedString(u.Object, "roleRef", "name"); ok && (ref == "cluster-admin" || ref == "admin" || ref == "edit") {
			t.Errorf("%s %s binds %s", u.GetKind(), u.GetName(), ref)
		}
		rules, _, _ := unstructured.NestedSlice(u.Object, "rules")
		for _, r := range rules {
			for _, k := range []string{"apiGroups", "resources", "verbs"} {
				vals, _, _ := unstructured.NestedStringSlice(r.(map[string]any), k)
				for _, v := range vals {
					if v == "*" {
						t.Errorf("%s %s: wildcard in %s", u.GetKind(), u.GetName(), k)
					}
				}
			}
		}
	}
}

func readManifests(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	return readYAMLDocs(t, filepath.Join(manifestDir, name), nil)
}

// readYAMLDocs reads a multi-document YAML file into objects; check, when
// given, sees each document's bytes first.
func readYAMLDocs(t *testing.T, path string, check func(doc []byte)) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		if check != nil {
			check(doc)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// The shipped manifests apply to a real apiserver, and the controller,
// running with exactly the shipped RBAC (impersonating its service
// account), rolls the default Plan out: the opted-in node is upgraded; live-booted,
// slot-less, opted-out and not-opted-in nodes are not.
func TestManifestsRollOutAsServiceAccount(t *testing.T) {
	if env == nil {
		t.Skipf("skipping: needs a real kube-apiserver and etcd: %v", envErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc := discovery.NewDiscoveryClientForConfigOrDie(env.Config)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn := dynamic.NewForConfigOrDie(env.Config)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/kestrel-os/kestrel/releases/tag/v0.2.0", http.StatusFound)
	}))
	defer srv.Close()
	for _, f := range []string{"namespace.yaml", "crd.yaml", "rbac.yaml", "deployment.yaml", "plan-kestrel.yaml"} {
		for _, u := range readManifests(t, f) {
			if u.GetKind() == "Plan" {
				_ = unstructured.SetNestedField(u.Object, srv.URL+"/latest", "spec", "channel")
				// The test's channel server is plain http: opt in.
				u.SetAnnotations(map[string]string{channel.AnnotationAllowHTTP: "true"})
			}
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s: %s: %v", f, gvk, err)
			}
			ri := dyn.Resource(m.Resource)
			var rc dynamic.ResourceInterface = ri
			if u.GetNamespace() != "" {
				rc = ri.Namespace(u.GetNamespace())
			}
			if _, err := rc.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "test", Force: true}); err != nil {
				t.Fatalf("%s: apply %s %s: %v", f, u.GetKind(), u.GetName(), err)
			}
			if u.GetKind() == "Plan" {
				// The shipped namespace is fixed: leave no Plan or Job
				// behind for a rerun (go test -count=N) to find done.
				name := u.GetName()
				t.Cleanup(func() {
					bg := context.Background()
					_ = rc.Delete(bg, name, metav1.DeleteOptions{})
					policy := metav1.DeletePropagationBackground
					_ = kubernetes.NewForConfigOrDie(env.Config).BatchV1().Jobs(u.GetNamespace()).DeleteCollection(bg,
						metav1.DeleteOptions{PropagationPolicy: &policy}, metav1.ListOptions{})
				})
			}
		}
	}
	c := &cluster{t: t, ctx: ctx, kube: kubernetes.NewForConfigOrDie(env.Config), ns: "kestrel-upgrade", run: "manifests", prefix: "m-"}
	var err error
	if c.plans, err = plan.NewClient(env.Config); err != nil {
		t.Fatal(err)
	}
	opted := c.nodes(1, "v0.1.0", map[string]string{"kestrel.io/upgrade": "true", "kestrel.io/slot": "a"})
	c.prefix = "m-live-"
	live := c.nodes(1, "v0.1.0", map[string]string{"kestrel.io/upgrade": "true", "kestrel.io/mode": "live", "kestrel.io/slot": "a"})
	c.prefix = "m-noslot-"
	noSlot := c.nodes(1, "v0.1.0", map[string]string{"kestrel.io/upgrade": "true"})
	c.prefix = "m-out-"
	out := c.nodes(1, "v0.1.0", map[string]string{"kestrel.io/slot": "b"})
	c.prefix = "m-off-"
	off := c.nodes(1, "v0.1.0", map[string]string{"kestrel.io/upgrade": "disabled", "kestrel.io/slot": "b"})

	sa := rest.CopyConfig(env.Config)
	sa.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:kestrel-upgrade:kestrel-upgrade-controller",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kestrel-upgrade", "system:authenticated"},
	}
	// The impersonation is real: the account may not do what it was not given.
	saKube := kubernetes.NewForConfigOrDie(sa)
	if err := saKube.CoreV1().Nodes().Delete(ctx, out[0], metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("service account deleting a node: err = %v, want Forbidden", err)
	}
	if _, err := saKube.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("service account listing kube-system secrets: err = %v, want Forbidden", err)
	}
	ctl, err := New(Config{RestConfig: sa, Namespace: "kestrel-upgrade",
		Health: health.Gate{Deadline: 30 * time.Second, Settle: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- RunWithLeaderElection(cctx, sa, Leader{Namespace: "kestrel-upgrade", Name: "kestrel-upgrade-controller", Identity: "test",
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}, ctl.Run)
	}()
	defer func() {
		ccancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	c.sim("kestrel", "v0.2.0", upgradeOK, 200*time.Millisecond)
	got := c.waitPlan("kestrel", 60*time.Second, "Complete", func(p *plan.Plan) bool { return p.Status.IsTrue(plan.CondComplete) })
	if got.Status.LatestVersion != "v0.2.0" {
		t.Errorf("latestVersion %q", got.Status.LatestVersion)
	}
	if c.node(opted[0]).Labels[plan.LabelPlanName("kestrel")] != got.Status.LatestHash {
		t.Errorf("opted-in node not upgraded")
	}
	for _, n := range append(append(append(live, out...), noSlot...), off...) {
		if v, ok := c.node(n).Labels[plan.LabelPlanName("kestrel")]; ok {
			t.Errorf("node %s touched: %q", n, v)
		}
	}
	for _, j := range c.jobs() {
		if n := j.Labels[plan.LabelNode]; n != opted[0] {
			t.Errorf("job for %s", n)
		}
		if img := j.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/kestrel-os/kestrel-upgrade:v0.2.0" {
			t.Errorf("job image %s", img)
		}
		if !strings.HasPrefix(j.Name, "apply-kestrel-on-"+opted[0]) {
			t.Errorf("job name %s", j.Name)
		}
	}
}
