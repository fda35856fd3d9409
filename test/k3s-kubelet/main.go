// Command k3s-kubelet is a STAND-IN FOR `k3s agent`, USED ONLY BY TESTS. It
// is not k3s: it runs the upstream containerd and kubelet that
// scripts/k8s-node-bins.sh builds (with Debian's runc and CNI plugins), the
// way a real `k3s agent` runs its embedded ones, so that the boot tests put
// a real Kubernetes node in the loop while k3s itself cannot be downloaded
// on the build machines. The builder installs it at /usr/bin/k3s only in a
// TEST image (`-k3s kubelet`); it carries k3sfetch.StandinMarker, by which
// the builder refuses it for any other image.
//
// Started as `k3s agent ...` by stage 2 (exactly as a real agent is), it:
//
//   - runs the node checks a real k3s needs (test/k3sprereq) and prints
//     each, PASS or FAIL (a failure is printed, not fatal: the kubelet and
//     containerd then fail in their own words);
//   - writes containerd's config (root on the state partition under
//     /var/lib/rancher/k3s/agent/containerd: overlay snapshots on ext4), the
//     CNI bridge config and the kubelet's config, where k3s keeps them;
//   - starts containerd, imports every archive in k3s's airgap image
//     directory (/var/lib/rancher/k3s/agent/images) with `ctr images
//     import`, then starts the kubelet with k3s's kubelet kubeconfig
//     (/var/lib/rancher/k3s/agent/kubelet.kubeconfig) and client CA
//     (client-ca.crt next to it), which the node's config delivers with
//     write_files: there is no k3s server to join, so the agent's server
//     URL and token are not used;
//   - exits when either process does (the supervisor restarts it), and on
//     SIGTERM stops the kubelet, then containerd (containers keep running,
//     as with k3s: a reboot ends them).
//
// When /var/lib/rancher/k3s-kubelet/never-healthy-version names the
// release the node runs (VERSION_ID in /etc/os-release), it starts nothing
// and waits for SIGTERM: the boot tests' release that is never healthy.
//
// Started as /pause (argv[0] "pause") it is the pod sandbox's pause process
// of the test pause image: it reaps children and sleeps until SIGTERM or
// SIGINT.
//
// Deliberately left out (a real k3s has them): flannel, kube-proxy and the
// service network, CoreDNS, the portmap plugin in the CNI chain (it needs
// the iptables tools, which the image lacks), TLS bootstrap, the server.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/test/k3sprereq"
)

// Name is how the stand-in introduces itself.
const Name = "k3s-kubelet (" + fetch.StandinMarker + ": upstream containerd + kubelet)"

// Paths on the node (k3s's own, so stage 2's hooks find what they expect).
const (
	ConfigFile     = "/etc/rancher/k3s/config.yaml"
	AgentDir       = "/var/lib/rancher/k3s/agent"
	Kubeconfig     = AgentDir + "/kubelet.kubeconfig" // nodelabels.KubeletKubeconfig
	ClientCA       = AgentDir + "/client-ca.crt"
	ImagesDir      = AgentDir + "/images" // k3sfetch.AgentImagesDir
	ContainerdRoot = AgentDir + "/containerd"
	ContainerdConf = AgentDir + "/etc/containerd/config.toml"
	CNIConfDir     = AgentDir + "/etc/cni/net.d"
	KubeletConf    = AgentDir + "/etc/kubelet.yaml"
	ContainerdRun  = "/run/k3s/containerd"
	Socket         = ContainerdRun + "/containerd.sock"
	CNIBinDir      = "/usr/lib/cni" // Debian's containernetworking-plugins
	Runc           = "/usr/sbin/runc"
)

// Images the test image builder makes (internal/build/pipeline, kubenode.go).
const (
	PauseImage   = "kestrel.test/pause:1"
	BusyboxImage = "kestrel.test/busybox:1"
)

// NeverHealthyFile names the release on which the stand-in plays a k3s
// that never becomes healthy.
const NeverHealthyFile = "/var/lib/rancher/k3s-kubelet/never-healthy-version"

// PodSubnet is the CNI bridge's pod network on the (single) node.
const PodSubnet = "10.42.0.0/24"

func main() {
	if filepath.Base(os.Args[0]) == "pause" {
		pause()
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println("k3s version v0.0.0-kubelet-standin (" + Name + ")")
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "agent" {
		fmt.Fprintf(os.Stderr, "%s: usage: k3s agent [flags] (only the agent role is played)\n", Name)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
		os.Exit(1)
	}
}

// pause is the sandbox process: reap, sleep, exit on TERM/INT.
func pause() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

// agentConfig is what the stand-in reads of k3s's config.yaml.
type agentConfig struct {
	NodeName  string   `yaml:"node-name"`
	NodeLabel []string `yaml:"node-label"`
}

func run(ctx context.Context) error {
	fmt.Println(Name + ": starting")
	if v, bad := neverHealthy(NeverHealthyFile, "/etc/os-release"); bad {
		fmt.Printf("%s: %s names this release (%s): starting nothing, never healthy\n", Name, NeverHealthyFile, v)
		<-ctx.Done()
		return nil
	}
	for _, r := range k3sprereq.Check(k3sprereq.Env{}) {
		fmt.Println("check", r)
	}
	cfg, err := readConfig(ConfigFile)
	if err != nil {
		return err
	}
	node := cfg.NodeName
	if node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		node = strings.ToLower(h)
	}
	for _, f := range []string{Kubeconfig, ClientCA} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (the test's config delivers it with write_files)", err)
		}
	}
	if err := writeConfigs(); err != nil {
		return err
	}

	containerd := command(ctx, "/usr/bin/containerd", "--config", ContainerdConf)
	if err := containerd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	cdDone := waitChan(containerd)
	defer stopProcess(containerd, cdDone)
	if err := waitSocket(ctx, Socket, cdDone, 2*time.Minute); err != nil {
		return err
	}
	if err := importImages(ctx, ImagesDir); err != nil {
		return err
	}

	args := []string{"--config", KubeletConf, "--kubeconfig", Kubeconfig, "--hostname-override", node, "--v=1"}
	if len(cfg.NodeLabel) > 0 {
		args = append(args, "--node-labels", strings.Join(cfg.NodeLabel, ","))
	}
	kubelet := command(ctx, "/usr/bin/kubelet", args...)
	if err := kubelet.Start(); err != nil {
		return fmt.Errorf("start kubelet: %w", err)
	}
	kDone := waitChan(kubelet)
	defer stopProcess(kubelet, kDone)
	fmt.Printf("%s: containerd pid %d, kubelet pid %d, node %s\n", Name, containerd.Process.Pid, kubelet.Process.Pid, node)

	select {
	case <-ctx.Done():
		fmt.Println(Name + ": stopping")
		return nil
	case <-kDone:
		return fmt.Errorf("kubelet exited: %v", kubelet.ProcessState)
	case <-cdDone:
		return fmt.Errorf("containerd exited: %v", containerd.ProcessState)
	}
}

// neverHealthy reports whether file names the release in osRelease.
func neverHealthy(file, osRelease string) (string, bool) {
	want, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	data, err := os.ReadFile(osRelease)
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_ID="); ok {
			v = strings.Trim(v, `"`)
			return v, v == strings.TrimSpace(string(want))
		}
	}
	return "", false
}

func readConfig(path string) (agentConfig, error) {
	var c agentConfig
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// command is a child whose output goes to the stand-in's (the supervisor's
// log); it is not tied to ctx: stopProcess ends it in order.
func command(_ context.Context, path string, args ...string) *exec.Cmd {
	c := exec.Command(path, args...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	c.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	return c
}

func waitChan(c *exec.Cmd) chan struct{} {
	ch := make(chan struct{})
	go func() { _ = c.Wait(); close(ch) }()
	return ch
}

// stopProcess sends SIGTERM, then SIGKILL after 20 s.
func stopProcess(c *exec.Cmd, done chan struct{}) {
	_ = c.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = c.Process.Kill()
		<-done
	}
}

func waitSocket(ctx context.Context, path string, died chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd: no socket %s within %v", path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-died:
			return errors.New("containerd exited before it listened")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// importImages imports each archive of dir into containerd's k8s.io
// namespace (where the CRI plugin looks), unpacked for the overlayfs
// snapshotter, as k3s does with its airgap directory.
func importImages(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("airgap images: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		start := time.Now()
		c := exec.CommandContext(ctx, "/usr/bin/ctr", "--address", Socket, "--namespace", "k8s.io",
			"images", "import", "--snapshotter", "overlayfs", filepath.Join(dir, n))
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s: %w: %s", n, err, out)
		}
		fmt.Printf("%s: imported %s in %v: %s", Name, n, time.Since(start).Round(time.Millisecond), out)
	}
	return nil
}

// writeConfigs writes containerd's, the CNI's and the kubelet's configs.
// They are fixed text with a few paths, so templates rather than a TOML
// or YAML encoder.
func writeConfigs() error {
	for path, data := range map[string]string{
		ContainerdConf: containerdConfig,
		filepath.Join(CNIConfDir, "10-kestrel.conflist"): cniConfig,
		KubeletConf: kubeletConfig,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			return err
		}
	}
	return os.MkdirAll(ContainerdRoot, 0o700)
}

var containerdConfig = `# Written by ` + Name + `
version = 3
root = "` + ContainerdRoot + `"
state = "` + ContainerdRun + `"

[grpc]
  address = "` + Socket + `"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "` + PauseImage + `"

[plugins.'io.containerd.cri.v1.runtime']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "` + Runc + `"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["` + CNIBinDir + `"]
    conf_dir = "` + CNIConfDir + `"
`

var cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "kestrel-test",
  "plugins": [{
    "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "` + PodSubnet + `"}]], "routes": [{"dst": "0.0.0.0/0"}],
             "dataDir": "` + AgentDir + `/cni-ipam"}
  }]
}
`

// kubeletConfig: cgroupfs (no systemd on Kestrel); the API server's
// client certificate is checked against ClientCA and then allowed
// everything (a test node: no webhook authorization round trips); swap is
// tolerated and eviction thresholds are low for a small state partition.
var kubeletConfig = `# Written by ` + Name + `
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://` + Socket + `
cgroupDriver: cgroupfs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ` + ClientCA + `}
authorization: {mode: AlwaysAllow}
healthzBindAddress: 127.0.0.1
healthzPort: 10248
failSwapOn: false
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 20Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
`
