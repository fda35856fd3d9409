//go:build tools

// Package tools pins the commands this module builds: a real kube-apiserver
// and etcd for Kestrel's controller tests. It is never linked into Kestrel.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
