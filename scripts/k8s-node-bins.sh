#!/usr/bin/env bash
# Builds a real Kubernetes node runtime for Kestrel's boot tests, from the Go
# module proxy alone: kubelet (k8s.io/kubernetes v1.36.4, the apiserver's
# minor: hack/k8s-test-bins) and containerd v2.3.7 (built against the same
# k8s.io 0.36 libraries, CRI v1) with containerd-shim-runc-v2 and ctr.
# hack/k8s-node-bins is a module of its own, a sibling of hack/k8s-test-bins
# (same replace block), so neither module's stamp changes with the other.
# runc and the CNI plugins are not built here: they are Debian's .debs
# (versions.yaml), fetched by the image builder.
#
# Output: .cache/k8s-node-bins/{kubelet,containerd,containerd-shim-runc-v2,ctr},
# all static (CGO off), and kube-controller-manager + kube-scheduler, which
# run on the host (not in an image) for the end-to-end Plan test. The image builder's `-k3s kubelet` takes them from
# there (KESTREL_K8S_NODE_BINS overrides the directory).
#
# Idempotent: a stamp records a hash of go.mod, go.sum, tools.go, this
# script and the binary list; a second run with the binaries present costs a sha256sum.
# Cold build, measured on this project's shared 2-core machine (noisy: other
# builds ran beside it): 457 s (4m46 user CPU) with the Go build cache
# already warm from k8s-test-bins' kube-apiserver (most of k8s.io is shared);
# expect several more minutes on an empty Go cache. Adding
# kube-controller-manager and kube-scheduler later: 322 s more. A relink
# after a flag change: ~20 s. The time is printed.
#
#   scripts/k8s-node-bins.sh                build the node's four if needed, print the directory
#   scripts/k8s-node-bins.sh --controllers  the same, and kube-controller-manager + kube-scheduler
#
# The controllers are only for the slow end-to-end Plan test:
# TestKubeNode (behind the slow tag too, since the build left the default
# suite) needs the node's four alone, and on a fresh machine the two
# controllers would add over five minutes to it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mod="$top/hack/k8s-node-bins"
out="${KESTREL_K8S_NODE_BINS:-$top/.cache/k8s-node-bins}"
bins=(kubelet containerd containerd-shim-runc-v2 ctr)
pkgs=(k8s.io/kubernetes/cmd/kubelet
  github.com/containerd/containerd/v2/cmd/containerd
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  github.com/containerd/containerd/v2/cmd/ctr)
case "${1:-}" in
  --controllers)
    bins+=(kube-controller-manager kube-scheduler)
    pkgs+=(k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler) ;;
  "") ;;
  *) echo "usage: $0 [--controllers]" >&2; exit 2 ;;
esac

# One stamp per binary, so asking for the controllers later builds only them.
want=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" "$0" | sha256sum | cut -c1-16)
todo=()
for i in "${!bins[@]}"; do
  b=${bins[$i]}
  if [ -x "$out/$b" ] && [ -f "$out/.stamp.$b" ] && [ "$(cat "$out/.stamp.$b")" = "$want" ]; then
    continue
  fi
  todo+=("$i")
done
if [ "${#todo[@]}" = 0 ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
start=$(date +%s)
names=(); for i in "${todo[@]}"; do names+=("${bins[$i]}"); done
echo "k8s-node-bins: building ${names[*]}" >&2
tmpdir=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmpdir"' EXIT
(
  cd "$mod"
  # The versions the binaries report (the Node's kubeletVersion,
  # `containerd --version`), as upstream's release builds stamp them.
  kver=$(awk '$1=="k8s.io/kubernetes"{print $2}' go.mod)
  cver=$(awk '$1=="github.com/containerd/containerd/v2"{print $2}' go.mod)
  kv=k8s.io/component-base/version
  kflags="-X $kv.gitVersion=$kver -X $kv.gitMajor=1 -X $kv.gitMinor=$(echo "$kver" | cut -d. -f2) -X $kv.gitTreeState=clean"
  cflags="-X github.com/containerd/containerd/v2/version.Version=$cver"
  for i in "${todo[@]}"; do
    flags=$cflags
    case ${bins[$i]} in kube*) flags=$kflags ;; esac
    # no_btrfs/no_devmapper/no_zfs: snapshotters a node on ext4 does not use
    # (btrfs also needs cgo); overlayfs and native stay.
    CGO_ENABLED=0 go build -mod=readonly -trimpath -tags 'no_btrfs no_devmapper no_zfs' \
      -ldflags="-s -w $flags" -o "$tmpdir/${bins[$i]}" "${pkgs[$i]}"
  done
)
for b in "${names[@]}"; do mv -f "$tmpdir/$b" "$out/$b"; echo "$want" > "$out/.stamp.$b"; done
echo "k8s-node-bins: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
