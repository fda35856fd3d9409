package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
)

// startControllers runs kube-controller-manager with only the controllers
// a Job on a real node needs (Jobs, their garbage, and the node lifecycle
// controller, which lifts the not-ready taint a new Node is admitted
// with), and kube-scheduler, both with the admin kubeconfig, no leader
// election and no serving port.
func (e *Env) startControllers() error {
	dir := e.opt.ControllerBins
	if dir == "" {
		return fmt.Errorf("testenv: Controllers needs ControllerBins (scripts/k8s-node-bins.sh)")
	}
	kc := filepath.Join(e.Dir, "admin.kubeconfig")
	if err := e.WriteKubeconfig(kc); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{"--kubeconfig", kc, "--leader-elect=false", "--secure-port=0",
			"--controllers=job-controller,garbage-collector-controller,ttl-after-finished-controller,node-lifecycle-controller",
			"--use-service-account-credentials=false"}},
		{"kube-scheduler", []string{"--kubeconfig", kc, "--leader-elect=false", "--secure-port=0"}},
	} {
		bin := filepath.Join(dir, c.name)
		if !isExec(bin) {
			return fmt.Errorf("testenv: %s not found in %s; build it with scripts/k8s-node-bins.sh", c.name, dir)
		}
		cmd := exec.Command(bin, c.args...)
		out, err := e.logFile(c.name)
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", c.name, err)
		}
		e.others = append(e.others, cmd)
		e.othersDone = append(e.othersDone, waitChan(cmd))
	}
	return nil
}
