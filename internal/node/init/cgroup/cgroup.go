// Package cgroup prepares the cgroup v2 hierarchy for delegation: it moves
// PID 1 out of the root cgroup into a leaf (the "no internal processes"
// rule forbids enabling controllers for children of a cgroup that has
// processes of its own), then enables every available controller in the
// root's cgroup.subtree_control, so k3s/containerd and the supervisor's
// per-service cgroups get cpu, memory, io, pids and the rest.
//
// Limits: cgroup v2 only (no v1 or hybrid); controllers are enabled one
// at a time, and those the kernel refuses are reported, not fatal.
package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Setup moves pid into root/leaf and enables the root's controllers. It
// returns the controllers now enabled for the root's children.
func Setup(root, leaf string, pid int) ([]string, error) {
	dir := filepath.Join(root, leaf)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return nil, fmt.Errorf("move pid %d into %s: %w", pid, dir, err)
	}
	return Enable(root)
}

// Enable writes +<controller> for every controller listed in
// dir/cgroup.controllers into dir/cgroup.subtree_control.
func Enable(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup controllers: %w", err)
	}
	var enabled, failed []string
	for _, c := range strings.Fields(string(b)) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0o644); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", c, err))
			continue
		}
		enabled = append(enabled, c)
	}
	if len(failed) > 0 {
		return enabled, fmt.Errorf("cgroup %s: could not enable %s", dir, strings.Join(failed, ", "))
	}
	return enabled, nil
}
