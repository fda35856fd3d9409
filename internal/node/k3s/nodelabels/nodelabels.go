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
// caller retries while it registers).
package nodelabels

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("node labels: kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.APIPath = "/api"
	// A bare scheme: the patch's body is raw JSON and only the error is
	// read, so none of client-go's typed API groups are linked into PID 1.
	cfg.GroupVersion = &schema.GroupVersion{Version: "v1"}
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(runtime.NewScheme()).WithoutConversion()
	cfg.UserAgent = "kestrel-nodelabels"
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return fmt.Errorf("node labels: %w", err)
	}
	patch, err := w.Patch()
	if err != nil {
		return err
	}
	for {
		err = c.Patch(types.MergePatchType).Resource("nodes").Name(node).Body(patch).Do(ctx).Error()
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
