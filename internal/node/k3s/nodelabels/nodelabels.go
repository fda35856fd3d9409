// Package nodelabels tells the cluster which Kestrel release a node runs:
// after every boot whose k3s is healthy it sets the labels kestrel.io/version
// and kestrel.io/slot on the node's own Node object, and the annotation
// kestrel.io/rolled-back-from when the node rolled back from a release (and
// removes it otherwise). The upgrade controller's health gate reads them.
//
// Why not k3s's --node-labels: the kubelet applies those only when the node
// first registers, so after an upgrade the label would still name the old
// release. The patch goes through the node's own credentials (the kubelet's
// kubeconfig), which NodeRestriction allows for labels outside the
// kubernetes.io and k8s.io prefixes.
//
// Limits: a JSON merge patch of metadata only; the Node must exist (the
// caller retries while it registers). The kubeconfig is read by this
// package, not client-go (kubeconfig.go says why): client certificates
// and bearer tokens only, no exec or auth-provider plugins, no proxy.
package nodelabels

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Keys the node sets.
const (
	LabelVersion         = "kestrel.io/version"
	LabelSlot            = "kestrel.io/slot"
	AnnotationRolledBack = "kestrel.io/rolled-back-from"
)

// KubeletKubeconfig is where k3s (server and agent) keeps the node's own
// credentials.
const KubeletKubeconfig = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"

// Want is what the Node should say.
type Want struct {
	Version        string // label value (already munged for a label)
	Slot           string
	RolledBackFrom string // "" removes the annotation
}

// Patch returns the JSON merge patch for w.
func (w Want) Patch() ([]byte, error) {
	var ann any = nil // null removes the key
	if w.RolledBackFrom != "" {
		ann = w.RolledBackFrom
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"labels":      map[string]string{LabelVersion: w.Version, LabelSlot: w.Slot},
		"annotations": map[string]any{AnnotationRolledBack: ann},
	}})
}

// Apply patches node through the kubeconfig at path, retrying every
// interval until ctx ends (the Node may not be registered yet).
func Apply(ctx context.Context, kubeconfig, node string, w Want, interval time.Duration) error {
	c, err := loadKubeconfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("node labels: kubeconfig %s: %w", kubeconfig, err)
	}
	patch, err := w.Patch()
	if err != nil {
		return err
	}
	for {
		err = c.patchNode(ctx, node, patch)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node labels: patch Node %s: %w", node, err)
		case <-time.After(interval):
		}
	}
}

// patchNode sends one JSON merge patch for the Node.
func (c *apiClient) patchNode(ctx context.Context, node string, patch []byte) error {
	u := c.server.JoinPath("api", "v1", "nodes", url.PathEscape(node))
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u.String(), bytes.NewReader(patch))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kestrel-nodelabels")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	// The API server's errors are metav1.Status objects: its message says
	// what was wrong ("nodes \"edge-1\" not found").
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return fmt.Errorf("%s: %s", resp.Status, st.Message)
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
}
