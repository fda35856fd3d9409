package nodelabels

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
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

	// The node's own credentials, laid out as k3s writes a kubelet's
	// kubeconfig (file references, relative and absolute): the Node
	// authorizer and NodeRestriction let system:node:edge-1 patch itself.
	nodeKC := k3sStyleKubeconfig(t, env, name)
	if err := Apply(ctx, nodeKC, name, Want{Version: "0.4.0", Slot: "b"}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if n.Labels[LabelVersion] != "0.4.0" || n.Labels[LabelSlot] != "b" {
		t.Fatalf("patched with the node's credentials: labels %v", n.Labels)
	}
	// ... and no other Node: the API server's refusal comes back whole.
	other := "edge-2"
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: other}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err = Apply(short, nodeKC, other, Want{Version: "0.4.0", Slot: "b"}, 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "edge-2") {
		t.Fatalf("patching another node's Node: got %v, want the API server's 403 naming edge-2", err)
	}
}

// k3sStyleKubeconfig writes the Env's kubeconfig for node's kubelet the
// way k3s lays out /var/lib/rancher/k3s/agent: the CA, client certificate
// and key in files beside it, referenced by name (relative and absolute).
func k3sStyleKubeconfig(t *testing.T, env *testenv.Env, node string) string {
	t.Helper()
	b, err := env.NodeKubeconfig(node, env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, b64 string) {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("server-ca.crt", kc.Clusters[0].Cluster.CertificateAuthorityData)
	write("client-kubelet.crt", kc.Users[0].User.ClientCertificateData)
	write("client-kubelet.key", kc.Users[0].User.ClientKeyData)
	path := filepath.Join(dir, "kubelet.kubeconfig")
	text := fmt.Sprintf(`apiVersion: v1
clusters:
- cluster:
    server: %s
    certificate-authority: %s
  name: local
contexts:
- context:
    cluster: local
    namespace: default
    user: user
  name: Default
current-context: Default
kind: Config
preferences: {}
users:
- name: user
  user:
    client-certificate: client-kubelet.crt
    client-key: %s
`, env.Config.Host, filepath.Join(dir, "server-ca.crt"), filepath.Join(dir, "client-kubelet.key"))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadKubeconfigRefuses: what the reader cannot use is an error that
// names the file and the entry, never a client that half works.
func TestLoadKubeconfigRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const cluster = "clusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n"
	const ctx = "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
	tests := []struct {
		name, text, want string
	}{
		{"not YAML", "clusters: [", "parse"},
		{"no such context", "current-context: y\n" + cluster, `context "y" not found`},
		{"no such cluster", ctx + "users:\n- name: u\n  user: {token: t}\n", `cluster "c" of context "x" not found`},
		{"no such user", ctx + cluster, `user "u" of context "x" not found`},
		{"exec plugin", ctx + cluster + "users:\n- name: u\n  user:\n    exec: {command: aws}\n", "not exec"},
		{"no server", ctx + "clusters:\n- name: c\n  cluster: {}\n" + "users:\n- name: u\n  user: {token: t}\n", "no server"},
		{"bad CA data", ctx + cluster + "    certificate-authority-data: '%%%'\nusers:\n- name: u\n  user: {token: t}\n", "not base64"},
		{"CA file not PEM", ctx + cluster + "    certificate-authority: ca.crt\nusers:\n- name: u\n  user: {token: t}\n", "no PEM certificate"},
		{"missing key file", ctx + cluster + "users:\n- name: u\n  user: {client-certificate: ca.crt, client-key: nokey}\n", "client-key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "kc")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadKubeconfig(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want an error naming %s and saying %q", err, path, tc.want)
			}
		})
	}
}

// TestLoadKubeconfigToken: a token user gets a bearer header, its file
// read relative to the kubeconfig, and the only context serves when
// current-context is unset.
func TestLoadKubeconfigToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kc")
	text := "contexts:\n- name: x\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: 'https://k.example:6443/prefix'}\nusers:\n- name: u\n  user: {tokenFile: token}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "s3cret" || c.server.String() != "https://k.example:6443/prefix" {
		t.Fatalf("token %q server %s", c.token, c.server)
	}
}

func TestApplyGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := Apply(ctx, filepath.Join(t.TempDir(), "missing"), "n", Want{}, 10*time.Millisecond); err == nil {
		t.Fatal("Apply with a missing kubeconfig succeeded")
	}
}
