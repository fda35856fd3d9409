//go:build tools

// Package tools pins the commands this module builds: a real kubelet,
// containerd, its runc shim and ctr, for Kestrel's boot tests of a real
// Kubernetes node, and the kube-controller-manager (Jobs) and
// kube-scheduler that the end-to-end Plan test runs on the host. It is never linked into Kestrel nor put in a release image.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
