package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadNodePins(t *testing.T) {
	ok := "kestrel: 0.1.0\ntest-node:\n  runc: 1.1.5+ds1-1+deb12u1\n  containernetworking-plugins: 1.1.1+ds1-3+b5\n  libseccomp2: 2.5.4-1+deb12u1\n"
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"complete", ok, ""},
		{"no section", "kestrel: 0.1.0\n", `no "test-node" section`},
		{"missing key", "test-node:\n  runc: 1\n  libseccomp2: 2\n", ":2: test-node.containernetworking-plugins: missing"},
		{"unknown key", "kestrel: 0.1.0\ntest-node:\n  runc: 1\n  crun: 2\n", "field crun not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "versions.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			pins, err := LoadNodePins(p)
			if tc.wantErr == "" {
				if err != nil || pins.Runc != "1.1.5+ds1-1+deb12u1" || pins.CNIPlugins == "" || pins.Libseccomp == "" {
					t.Fatalf("LoadNodePins = %+v, %v", pins, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and %q", err, p, tc.wantErr)
			}
		})
	}
}

// TestRepoNodePins reads the repository's own versions.yaml.
func TestRepoNodePins(t *testing.T) {
	if _, err := LoadNodePins("../../../versions.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestCheckStaticRefusesDynamic(t *testing.T) {
	if err := checkStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("checkStatic(/bin/sh) = %v, want dynamically linked", err)
	}
	if err := checkStatic(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("checkStatic of a missing file: no error")
	}
}
