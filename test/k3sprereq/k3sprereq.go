// Package k3sprereq checks that a running node offers what a real k3s needs
// before it can work: cgroup v2 with the cpu, memory and pids controllers
// available and delegated from the root cgroup, the kernel modules for
// overlayfs, bridging, conntrack, iptables/nftables, VXLAN (flannel) and
// veth, the forwarding and bridge-netfilter sysctls, shared propagation on
// /, a CA bundle, a resolv.conf with a nameserver, /dev/kmsg, a hostname, no
// active swap, and a writable /var/lib/rancher.
//
// Every path is read under injectable roots (Env) so the checks are table
// tested on the host against fake /proc and /sys trees. The k3s stand-in
// used by the boot tests runs them on the booted node; stage 2 or `kestrel
// status` may run them before starting the real k3s.
//
// Limits: it only reads state; it never loads modules or sets sysctls. A
// module counts as present when /proc/modules lists it or /sys/module/<name>
// exists, so a built-in module without parameters (absent from both) is
// reported missing. It does not check kernel config options, iptables
// userspace tools, or cgroup v1 (Kestrel boots cgroup v2 only).
package k3sprereq

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

// Env locates the trees the checks read. Empty fields mean the live system.
type Env struct {
	Root string // prefix of /etc, /dev, /var; default "/"
	Proc string // default "/proc"
	Sys  string // default "/sys"
}

func (e Env) root(p string) string { return filepath.Join(or(e.Root, "/"), p) }
func (e Env) proc(p string) string { return filepath.Join(or(e.Proc, "/proc"), p) }
func (e Env) sys(p string) string  { return filepath.Join(or(e.Sys, "/sys"), p) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (r Result) String() string {
	s := "FAIL"
	if r.OK {
		s = "PASS"
	}
	return fmt.Sprintf("%-28s %s  %s", r.Name, s, r.Detail)
}

// Modules names each module check and the module names that satisfy it
// (any one of them).
var Modules = []struct {
	Check string
	Names []string
}{
	{"module-overlay", []string{"overlay"}},
	{"module-br_netfilter", []string{"br_netfilter"}},
	{"module-nf_conntrack", []string{"nf_conntrack"}},
	{"module-iptables", []string{"ip_tables", "nf_tables"}},
	{"module-vxlan", []string{"vxlan"}},
	{"module-bridge", []string{"bridge"}},
	{"module-veth", []string{"veth"}},
}

// Controllers are the cgroup v2 controllers k3s's kubelet needs.
var Controllers = []string{"cpu", "memory", "pids"}

// Sysctls are the sysctls that must be 1.
var Sysctls = []string{"net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"}

// CABundles are the places a CA bundle is looked for; the first is
// Debian's, which Kestrel ships.
var CABundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}

// Check runs every check, in a fixed order.
func Check(env Env) []Result {
	ms, mErr := mounts.ReadMountinfo(env.proc("self/mountinfo"))
	var rs []Result
	rs = append(rs, checkCgroup2(env, ms, mErr)...)
	rs = append(rs, checkModules(env)...)
	for _, s := range Sysctls {
		rs = append(rs, checkSysctl(env, s))
	}
	rs = append(rs,
		checkRootShared(ms, mErr),
		checkCABundle(env),
		checkResolvConf(env),
		checkKmsg(env),
		checkHostname(env),
		checkSwap(env),
		checkWritable(env, "/var/lib/rancher"),
	)
	return rs
}

// Failed returns the results that did not pass.
func Failed(rs []Result) []Result {
	var f []Result
	for _, r := range rs {
		if !r.OK {
			f = append(f, r)
		}
	}
	return f
}

func checkCgroup2(env Env, ms []mounts.Info, mErr error) []Result {
	mounted := Result{Name: "cgroup2-mounted"}
	avail := Result{Name: "cgroup2-controllers"}
	deleg := Result{Name: "cgroup2-delegated"}
	all := []*Result{&mounted, &avail, &deleg}
	if mErr != nil {
		for _, r := range all {
			r.Detail = "mountinfo: " + mErr.Error()
		}
		return []Result{mounted, avail, deleg}
	}
	m, ok := mounts.Find(ms, "/sys/fs/cgroup")
	switch {
	case !ok:
		mounted.Detail = "nothing mounted on /sys/fs/cgroup"
	case m.FSType != "cgroup2":
		mounted.Detail = fmt.Sprintf("/sys/fs/cgroup is %s, not cgroup2 (unified hierarchy)", m.FSType)
	default:
		mounted.OK, mounted.Detail = true, "cgroup2 on /sys/fs/cgroup"
	}
	for _, c := range []struct {
		r    *Result
		file string
		verb string
	}{
		{&avail, "fs/cgroup/cgroup.controllers", "available"},
		{&deleg, "fs/cgroup/cgroup.subtree_control", "enabled for child cgroups"},
	} {
		data, err := os.ReadFile(env.sys(c.file))
		if err != nil {
			c.r.Detail = err.Error()
			continue
		}
		have := map[string]bool{}
		for _, f := range strings.Fields(string(data)) {
			have[f] = true
		}
		var missing []string
		for _, want := range Controllers {
			if !have[want] {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			c.r.Detail = fmt.Sprintf("%s not %s (have %q)", strings.Join(missing, ", "), c.verb, strings.TrimSpace(string(data)))
		} else {
			c.r.OK, c.r.Detail = true, strings.Join(Controllers, ", ")+" "+c.verb
		}
	}
	return []Result{mounted, avail, deleg}
}

func checkModules(env Env) []Result {
	loaded := map[string]bool{}
	if data, err := os.ReadFile(env.proc("modules")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				loaded[f[0]] = true
			}
		}
	}
	var rs []Result
	for _, m := range Modules {
		r := Result{Name: m.Check, Detail: strings.Join(m.Names, " or ") + " not loaded (not in /proc/modules or /sys/module)"}
		for _, n := range m.Names {
			if loaded[n] {
				r.OK, r.Detail = true, n+" loaded"
				break
			}
			if fi, err := os.Stat(env.sys("module/" + n)); err == nil && fi.IsDir() {
				r.OK, r.Detail = true, n+" present (/sys/module)"
				break
			}
		}
		rs = append(rs, r)
	}
	return rs
}

func checkSysctl(env Env, name string) Result {
	r := Result{Name: "sysctl-" + name}
	data, err := os.ReadFile(env.proc("sys/" + strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	v := strings.TrimSpace(string(data))
	r.OK, r.Detail = v == "1", name+" = "+v
	return r
}

func checkRootShared(ms []mounts.Info, mErr error) Result {
	r := Result{Name: "root-shared"}
	if mErr != nil {
		r.Detail = "mountinfo: " + mErr.Error()
		return r
	}
	m, ok := mounts.Find(ms, "/")
	if !ok {
		r.Detail = "no mount on / in mountinfo"
		return r
	}
	for _, o := range m.Optional {
		if strings.HasPrefix(o, "shared:") {
			r.OK, r.Detail = true, "/ is "+o
			return r
		}
	}
	r.Detail = "/ is not shared (optional fields: " + strings.Join(m.Optional, " ") + "); mount --make-rshared /"
	return r
}

func checkCABundle(env Env) Result {
	r := Result{Name: "ca-bundle", Detail: "no CA bundle at " + strings.Join(CABundles, " or ")}
	for _, p := range CABundles {
		data, err := os.ReadFile(env.root(p))
		if err == nil && bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
			r.OK = true
			r.Detail = fmt.Sprintf("%s (%d certificates)", p, bytes.Count(data, []byte("-----BEGIN CERTIFICATE-----")))
			return r
		}
	}
	return r
}

func checkResolvConf(env Env) Result {
	r := Result{Name: "resolv-conf"}
	data, err := os.ReadFile(env.root("/etc/resolv.conf"))
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	var ns []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			ns = append(ns, f[1])
		}
	}
	if len(ns) == 0 {
		r.Detail = "/etc/resolv.conf has no nameserver line"
		return r
	}
	r.OK, r.Detail = true, "nameserver "+strings.Join(ns, ", ")
	return r
}

func checkKmsg(env Env) Result {
	r := Result{Name: "dev-kmsg"}
	fi, err := os.Stat(env.root("/dev/kmsg"))
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	// On the live system it must be the character device; a fake root in
	// tests holds a plain file.
	if or(env.Root, "/") == "/" && fi.Mode()&os.ModeCharDevice == 0 {
		r.Detail = "/dev/kmsg is not a character device"
		return r
	}
	r.OK, r.Detail = true, "/dev/kmsg exists"
	return r
}

func checkHostname(env Env) Result {
	r := Result{Name: "hostname"}
	data, err := os.ReadFile(env.proc("sys/kernel/hostname"))
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	h := strings.TrimSpace(string(data))
	if h == "" || h == "(none)" {
		r.Detail = fmt.Sprintf("hostname not set (%q)", h)
		return r
	}
	r.OK, r.Detail = true, h
	return r
}

func checkSwap(env Env) Result {
	r := Result{Name: "no-swap"}
	data, err := os.ReadFile(env.proc("swaps"))
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	var active []string
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			active = append(active, f[0])
		}
	}
	if len(active) > 0 {
		r.Detail = "swap active: " + strings.Join(active, ", ")
		return r
	}
	r.OK, r.Detail = true, "no swap active"
	return r
}

func checkWritable(env Env, dir string) Result {
	r := Result{Name: "writable-" + strings.ReplaceAll(strings.Trim(dir, "/"), "/", "-")}
	p := env.root(dir)
	if err := os.MkdirAll(p, 0o755); err != nil {
		r.Detail = err.Error()
		return r
	}
	f, err := os.CreateTemp(p, ".k3sprereq-*")
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	f.Close()
	os.Remove(f.Name())
	r.OK, r.Detail = true, dir+" is writable"
	return r
}
