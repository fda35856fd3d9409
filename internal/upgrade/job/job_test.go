package job

import (
	"strings"
	"testing"
)

func TestWithLatestTag(t *testing.T) {
	tests := []struct{ image, version, want string }{
		{"rancher/k3s-upgrade", "v1.30.1+k3s1", "rancher/k3s-upgrade:v1.30.1-k3s1"},
		{"rancher/k3s-upgrade:v1.29.0-k3s1", "v1.30.1", "rancher/k3s-upgrade:v1.29.0-k3s1"},
		{"registry.local:5000/kestrel-upgrade", "v2", "registry.local:5000/kestrel-upgrade:v2"},
		{"registry.local:5000/kestrel-upgrade:v1", "v2", "registry.local:5000/kestrel-upgrade:v1"},
		{"ghcr.io/x/y@sha256:abc", "v2", "ghcr.io/x/y@sha256:abc"},
		{"alpine", "", "alpine"},
	}
	for _, tc := range tests {
		if got := WithLatestTag(tc.image, tc.version); got != tc.want {
			t.Errorf("WithLatestTag(%q, %q) = %q, want %q", tc.image, tc.version, got, tc.want)
		}
	}
}

// SUC's names: apply-<plan>-on-<node>-with-<hash>, cut to 63 characters
// with a digest suffix (wrangler's SafeConcatName).
func TestName(t *testing.T) {
	short := Name("p", "n", "h")
	if short != "apply-p-on-n-with-h" {
		t.Errorf("short name %q", short)
	}
	hash := strings.Repeat("a", 56)
	long := Name("k3os-latest", "node-1", hash)
	if len(long) > 63 || !strings.HasPrefix(long, "apply-k3os-latest-on-node-1-with-aaaa") {
		t.Errorf("long name %q (%d)", long, len(long))
	}
	if Name("k3os-latest", "node-2", hash) == long {
		t.Error("different nodes, same name")
	}
}
