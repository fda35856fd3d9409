//go:build tools

// Package tools pins the commands this module builds: a real kubelet,
// containerd, its runc shim and ctr, for Kestrel's boot tests of a real
// Kubernetes node. It is never linked into Kestrel nor put in a release image.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
