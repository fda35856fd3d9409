// The three programs' trees stay apart: device code never links into the
// builder or the controller, and the other way round. Shared packages sit
// directly under internal/ and import none of the three trees. Device-only
// libraries (u-root's module loader) stay out of the other programs too.
package internal_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/kestrel-os/kestrel/"

// kmodule is u-root's kernel module loader (finit_module): device code.
const kmodule = "github.com/u-root/u-root/pkg/kmodule"

func TestProgramBoundaries(t *testing.T) {
	rules := []struct {
		from      string   // packages under this prefix (or exactly this path) ...
		forbidden []string // ... must not depend on any of these, directly or not
	}{
		{"internal/node", []string{"internal/build", "internal/upgrade"}},
		{"internal/build", []string{"internal/node", "internal/upgrade"}},
		{"internal/upgrade", []string{"internal/node", "internal/build"}},
		{"internal/", []string{"internal/node", "internal/build", "internal/upgrade", "test/"}}, // shared: none of the trees
		{"cmd/kestrel", []string{"internal/build", "internal/upgrade"}},
		{"cmd/kestrel-build", []string{"internal/node", "internal/upgrade", kmodule}},
		{"cmd/upgrade-controller", []string{"internal/node", "internal/build", kmodule}},
		// The real-inputs corpus is other people's files, for tests only:
		// no program links the package that finds it.
		{"internal/", []string{"internal/realinputs"}},
		{"internal/node", []string{"internal/realinputs"}},
		{"internal/build", []string{"internal/realinputs"}},
		{"internal/upgrade", []string{"internal/realinputs"}},
		{"cmd/", []string{"internal/realinputs"}},
	}
	deps := listDeps(t)
	if len(deps) == 0 {
		t.Fatal("go list found no packages")
	}
	for _, r := range rules {
		for pkg, ds := range deps {
			if !within(pkg, r.from) || (r.from == "internal/" && ownTree(pkg)) {
				continue
			}
			for _, d := range ds {
				for _, f := range r.forbidden {
					if within(d, f) {
						t.Errorf("%s depends on %s (%s must not reach %s)", pkg, d, r.from, f)
					}
				}
			}
		}
	}
}

// listDeps maps each package of the module (module prefix cut off) to its
// non-test dependencies, transitively, as go list sees them: those within
// the module with the prefix cut off, third-party ones by their full
// import path. The standard library is left out, so that its internal/...
// packages cannot be mistaken for ours.
func listDeps(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		deps[pkg] = nil
		for _, d := range f[1:] {
			switch {
			case strings.HasPrefix(d, module):
				deps[pkg] = append(deps[pkg], strings.TrimPrefix(d, module))
			case thirdParty(d):
				deps[pkg] = append(deps[pkg], d)
			}
		}
	}
	return deps
}

// within reports whether pkg is prefix itself or lies below it; a prefix
// ending in "/" matches everything below it.
func within(pkg, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(pkg, prefix)
	}
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// thirdParty reports whether an import path is outside the standard
// library: its first element is a domain name.
func thirdParty(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return strings.Contains(first, ".")
}

func ownTree(pkg string) bool {
	return within(pkg, "internal/node") || within(pkg, "internal/build") || within(pkg, "internal/upgrade")
}

// k8s.io/kubectl (for its drain library) brings text/template, which stops
// the linker from pruning unused methods, and kustomize: it roughly doubles
// a binary. Only the drain package imports it, and only the controller's
// tree links it.
func TestKubectlOnlyInDrain(t *testing.T) {
	const kubectl, drain = "k8s.io/kubectl", "internal/upgrade/drain"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{join .Deps " "}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		pkg := strings.TrimPrefix(f[0], module)
		for _, d := range strings.Fields(f[1]) {
			switch {
			case within(d, kubectl) && pkg == drain:
				seen = true
			case within(d, kubectl):
				t.Errorf("%s imports %s; only %s may", pkg, d, drain)
			}
		}
		if !within(pkg, "internal/upgrade") && !within(pkg, "cmd/upgrade-controller") {
			for _, d := range strings.Fields(f[2]) {
				if within(d, kubectl) {
					t.Errorf("%s links %s", pkg, d)
					break
				}
			}
		}
	}
	if !seen {
		t.Errorf("go list shows no import of %s by %s: this check sees nothing", kubectl, drain)
	}
}
