package cgroup

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// On a plain directory the writes land in files; the kernel's semantics
// (one controller per write) are what the real boot test checks.
func TestSetup(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o444)
	got, err := Setup(root, "init", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cpuset", "cpu", "io", "memory", "pids"}; !reflect.DeepEqual(got, want) {
		t.Errorf("enabled = %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "init", "cgroup.procs")); string(b) != "1" {
		t.Errorf("procs = %q", b)
	}
	if _, err := Setup(filepath.Join(root, "missing", "x"), "init", 1); err == nil {
		t.Error("setup without controllers succeeded")
	}
}
