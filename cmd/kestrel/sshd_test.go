package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
)

// TestSSHDRestartsOnlyWhenNetworkUpChangesIt runs the two hooks with a real
// supervisor and a stand-in for sshd (sleep): the network-up hook leaves
// an unchanged server alone and replaces one whose arguments changed.
func TestSSHDRestartsOnlyWhenNetworkUpChangesIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := reaper.New(nil)
	go r.Loop(ctx)
	sup := supervisor.New(supervisor.Config{Reaper: r, LogDir: t.TempDir(), StopTimeout: 100 * time.Millisecond})
	defer sup.StopAll()
	sys := &stage2.System{Supervisor: sup}

	args := []string{"60"}
	spec := func() supervisor.Spec {
		return supervisor.Spec{Name: "sshd", Path: "/bin/sleep", Args: slices.Clone(args)}
	}
	boot, networkUp := sshdHooks(spec)
	if err := boot.Run(ctx, sys); err != nil {
		t.Fatal(err)
	}
	pid := waitPID(t, sup, 0)

	if err := networkUp.Run(ctx, sys); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := waitPID(t, sup, 0); got != pid {
		t.Fatalf("unchanged config restarted sshd: pid %d -> %d", pid, got)
	}

	args = []string{"61"} // as if network-up turned password login on
	if err := networkUp.Run(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if got := waitPID(t, sup, pid); got == pid {
		t.Fatalf("changed config did not restart sshd")
	}
}

// waitPID waits for the running sshd service with a PID other than not.
func waitPID(t *testing.T, sup *supervisor.Supervisor, not int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, st := range sup.Status() {
			if st.Name == "sshd" && st.State == supervisor.Running && st.PID > 0 && st.PID != not {
				return st.PID
			}
		}
	}
	t.Fatalf("sshd not running (other than pid %d): %+v", not, sup.Status())
	return 0
}
