package service

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/sysctl"
)

// NodeSysctls are set to 1 before k3s starts: forwarding for pod traffic,
// bridge netfilter so kube-proxy's rules see bridged packets (these exist
// only once br_netfilter is loaded, which is why the node is prepared
// after System.WaitModules).
var NodeSysctls = []string{
	"net.ipv4.ip_forward",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
}

// Persistent places k3s needs beyond /var (which is already the state
// partition's): /etc is a fresh tmpfs each boot, so the node password
// directory is bound from /var.
const (
	NodeDir      = "/etc/rancher/node"
	NodeStateDir = "/var/lib/kestrel/rancher-node"
)

// Node prepares the environment a real k3s needs that stage 2 does not
// already give every node. Root is "/" on the device.
type Node struct {
	Root    string
	Mount   mounts.MountFunc
	Swapoff func(path string) error
}

// Prepare sets the sysctls, binds NodeDir from NodeStateDir, makes /
// recursively shared (again: harmless when stage 2 did), turns swap off
// and checks /dev/kmsg. It does every step and returns every problem.
func (n Node) Prepare() []error {
	p := func(s string) string { return filepath.Join(n.Root, s) }
	var errs []error
	for _, k := range NodeSysctls {
		if err := sysctl.Write(p("/proc/sys"), k, "1"); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s=1: %w", k, err))
		}
	}
	if err := n.bindNodeDir(); err != nil {
		errs = append(errs, err)
	}
	if err := n.Mount("", p("/"), "", syscall.MS_REC|syscall.MS_SHARED, ""); err != nil {
		errs = append(errs, fmt.Errorf("make / rshared: %w", err))
	}
	swaps, err := activeSwaps(p("/proc/swaps"))
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range swaps {
		if err := n.Swapoff(s); err != nil {
			errs = append(errs, fmt.Errorf("swapoff %s: %w", s, err))
		}
	}
	if _, err := os.Stat(p("/dev/kmsg")); err != nil {
		errs = append(errs, fmt.Errorf("/dev/kmsg (kubelet reads kernel messages from it): %w", err))
	}
	return errs
}

func (n Node) bindNodeDir() error {
	src, dst := filepath.Join(n.Root, NodeStateDir), filepath.Join(n.Root, NodeDir)
	if err := os.MkdirAll(src, 0o700); err != nil {
		return fmt.Errorf("node password directory: %w", err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("node password directory: %w", err)
	}
	if same(src, dst) {
		return nil // bound already (the hook ran before in this boot)
	}
	m := mounts.Mount{Source: src, Target: dst, Flags: syscall.MS_BIND}
	if err := m.Do(n.Mount); err != nil {
		return fmt.Errorf("node password directory: %w", err)
	}
	return nil
}

// same reports whether two paths are the same directory (a bind mount).
func same(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// activeSwaps lists the swap devices or files in /proc/swaps.
func activeSwaps(path string) ([]string, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil // a kernel without swap support
	}
	if err != nil {
		return nil, fmt.Errorf("swaps: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		if f := strings.Fields(sc.Text()); !first && len(f) > 0 {
			out = append(out, strings.ReplaceAll(f[0], `\040`, " "))
		}
	}
	return out, sc.Err()
}

// Swapoff is swapoff(2), for Node.Swapoff on the device.
func Swapoff(path string) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_SWAPOFF, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}
