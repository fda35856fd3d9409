#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd for the upgrade controller's tests,
# from the Go module proxy alone (hack/k8s-test-bins is a module of its own so
# the project's go.mod never sees k8s.io/kubernetes).
#
# Output: .cache/k8s-test-bins/{kube-apiserver,etcd}. Point KUBEBUILDER_ASSETS
# (or KESTREL_K8S_TEST_BINS) at that directory; tests skip without it.
#
# Idempotent: a stamp records a hash of go.mod, go.sum, tools.go and the
# binary list; a second run with the binaries present costs a sha256sum.
# A cold build takes about 7 minutes of 2 cores; the time is printed.
#
#   scripts/k8s-test-bins.sh          build if needed, print the directory
#   scripts/k8s-test-bins.sh -regen   rewrite the replace block of go.mod from
#                                     kubernetes' own go.mod (after a bump)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mod="$top/hack/k8s-test-bins"
out="$top/.cache/k8s-test-bins"
bins=(kube-apiserver etcd)
pkgs=(k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3)

if [ "${1:-}" = "-regen" ]; then
  ver=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$mod/go.mod")
  staging=${ver/v1./v0.}
  kmod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  tmp=$(mktemp)
  sed '/^replace (/,$d' "$mod/go.mod" > "$tmp"
  {
    echo 'replace ('
    grep -E '^\s+k8s.io/[a-z-]+ v0.0.0$' "$kmod" | awk -v v="$staging" '{print "\t"$1" => "$1" "v}'
    echo ')'
  } >> "$tmp"
  mv "$tmp" "$mod/go.mod"
  (cd "$mod" && go mod tidy)
  exit 0
fi

want=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" <(printf '%s\n' "${bins[@]}") | sha256sum | cut -c1-16)
stamp="$out/.stamp"
have_all=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || have_all=0; done
if [ "$have_all" = 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
start=$(date +%s)
echo "k8s-test-bins: building ${bins[*]} (cold: ~7 min on 2 cores)" >&2
tmpdir=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmpdir"' EXIT
(
  cd "$mod"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' -o "$tmpdir/kube-apiserver" "${pkgs[0]}"
  CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' -o "$tmpdir/etcd" "${pkgs[1]}"
)
for b in "${bins[@]}"; do mv -f "$tmpdir/$b" "$out/$b"; done
echo "$want" > "$stamp"
echo "k8s-test-bins: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
