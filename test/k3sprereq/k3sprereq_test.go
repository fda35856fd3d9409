package k3sprereq

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodMountinfo = `20 1 0:18 / / ro,relatime shared:1 - squashfs /dev/vda2 ro
21 20 0:19 / /proc rw,nosuid shared:2 - proc proc rw
22 20 0:20 / /sys rw,nosuid shared:3 - sysfs sysfs rw
23 22 0:21 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
24 20 0:22 / /var rw shared:5 - ext4 /dev/vda4 rw
`

const goodModules = `overlay 151552 0 - Live 0x0000000000000000
br_netfilter 32768 0 - Live 0x0000000000000000
bridge 311296 1 br_netfilter, Live 0x0000000000000000
nf_conntrack 176128 0 - Live 0x0000000000000000
nf_tables 299008 0 - Live 0x0000000000000000
vxlan 94208 0 - Live 0x0000000000000000
`

// fakeNode writes a tree on which every check passes and returns its Env.
func fakeNode(t *testing.T) Env {
	t.Helper()
	d := t.TempDir()
	env := Env{Root: filepath.Join(d, "root"), Proc: filepath.Join(d, "proc"), Sys: filepath.Join(d, "sys")}
	files := map[string]string{
		env.Proc + "/self/mountinfo":                         goodMountinfo,
		env.Proc + "/modules":                                goodModules,
		env.Proc + "/sys/net/ipv4/ip_forward":                "1\n",
		env.Proc + "/sys/net/bridge/bridge-nf-call-iptables": "1\n",
		env.Proc + "/sys/kernel/hostname":                    "edge-01\n",
		env.Proc + "/swaps":                                  "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
		env.Sys + "/fs/cgroup/cgroup.controllers":            "cpuset cpu io memory hugetlb pids rdma misc\n",
		env.Sys + "/fs/cgroup/cgroup.subtree_control":        "cpu memory pids\n",
		env.Sys + "/module/veth/parameters/.keep":            "", // veth only in /sys/module
		env.Root + "/etc/ssl/certs/ca-certificates.crt":      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		env.Root + "/etc/resolv.conf":                        "# generated\nsearch lan\nnameserver 10.0.2.3\n",
		env.Root + "/dev/kmsg":                               "",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func write(t *testing.T, path, content string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAllPass(t *testing.T) {
	rs := Check(fakeNode(t))
	if f := Failed(rs); len(f) > 0 {
		t.Fatalf("failed on a good node: %v", f)
	}
	if len(rs) != 3+len(Modules)+len(Sysctls)+7 {
		t.Errorf("%d results, want every check once", len(rs))
	}
}

func TestEachFailure(t *testing.T) {
	tests := []struct {
		name   string
		breakf func(t *testing.T, e Env)
		fails  []string // exactly these checks fail
		detail string   // in the first failure's detail
	}{
		{"cgroup v1", func(t *testing.T, e Env) {
			write(t, e.Proc+"/self/mountinfo", strings.Replace(goodMountinfo, "- cgroup2 cgroup2", "- tmpfs tmpfs", 1))
		}, []string{"cgroup2-mounted"}, "is tmpfs"},
		{"no cgroup mount", func(t *testing.T, e Env) {
			write(t, e.Proc+"/self/mountinfo", strings.Replace(goodMountinfo, "/sys/fs/cgroup", "/mnt", 1))
		}, []string{"cgroup2-mounted"}, "nothing mounted"},
		{"memory controller missing", func(t *testing.T, e Env) {
			write(t, e.Sys+"/fs/cgroup/cgroup.controllers", "cpu pids\n")
		}, []string{"cgroup2-controllers"}, "memory not available"},
		{"controllers not delegated", func(t *testing.T, e Env) {
			write(t, e.Sys+"/fs/cgroup/cgroup.subtree_control", "\n")
		}, []string{"cgroup2-delegated"}, "cpu, memory, pids not enabled"},
		{"no overlay", func(t *testing.T, e Env) {
			write(t, e.Proc+"/modules", strings.Replace(goodModules, "overlay ", "zram ", 1))
		}, []string{"module-overlay"}, "overlay not loaded"},
		{"iptables via ip_tables", func(t *testing.T, e Env) {
			write(t, e.Proc+"/modules", strings.Replace(goodModules, "nf_tables ", "ip_tables ", 1))
		}, nil, ""},
		{"no iptables at all", func(t *testing.T, e Env) {
			write(t, e.Proc+"/modules", strings.Replace(goodModules, "nf_tables ", "x_tables ", 1))
		}, []string{"module-iptables"}, "ip_tables or nf_tables"},
		{"no modules file", func(t *testing.T, e Env) { os.Remove(e.Proc + "/modules") },
			[]string{"module-overlay", "module-br_netfilter", "module-nf_conntrack", "module-iptables", "module-vxlan", "module-bridge"}, "overlay"},
		{"ip_forward off", func(t *testing.T, e Env) { write(t, e.Proc+"/sys/net/ipv4/ip_forward", "0\n") },
			[]string{"sysctl-net.ipv4.ip_forward"}, "= 0"},
		{"br_netfilter sysctl missing", func(t *testing.T, e Env) { os.RemoveAll(e.Proc + "/sys/net/bridge") },
			[]string{"sysctl-net.bridge.bridge-nf-call-iptables"}, "no such file"},
		{"root private", func(t *testing.T, e Env) {
			write(t, e.Proc+"/self/mountinfo", strings.Replace(goodMountinfo, "ro,relatime shared:1", "ro,relatime", 1))
		}, []string{"root-shared"}, "not shared"},
		{"root overmounted private", func(t *testing.T, e Env) {
			write(t, e.Proc+"/self/mountinfo", goodMountinfo+"30 20 0:30 / / rw master:1 - overlay overlay rw\n")
		}, []string{"root-shared"}, "master:1"},
		{"no CA bundle", func(t *testing.T, e Env) { os.Remove(e.Root + "/etc/ssl/certs/ca-certificates.crt") },
			[]string{"ca-bundle"}, "no CA bundle"},
		{"CA bundle empty", func(t *testing.T, e Env) { write(t, e.Root+"/etc/ssl/certs/ca-certificates.crt", "") },
			[]string{"ca-bundle"}, "no CA bundle"},
		{"resolv.conf without nameserver", func(t *testing.T, e Env) { write(t, e.Root+"/etc/resolv.conf", "search lan\n") },
			[]string{"resolv-conf"}, "no nameserver"},
		{"no kmsg", func(t *testing.T, e Env) { os.Remove(e.Root + "/dev/kmsg") }, []string{"dev-kmsg"}, "no such file"},
		{"hostname unset", func(t *testing.T, e Env) { write(t, e.Proc+"/sys/kernel/hostname", "(none)\n") },
			[]string{"hostname"}, "not set"},
		{"swap on", func(t *testing.T, e Env) {
			write(t, e.Proc+"/swaps", "Filename Type Size Used Priority\n/dev/zram0 partition 1024 0 100\n")
		}, []string{"no-swap"}, "/dev/zram0"},
		{"rancher not writable", func(t *testing.T, e Env) { write(t, e.Root+"/var/lib", "a file, not a dir") },
			[]string{"writable-var-lib-rancher"}, "not a directory"},
		{"no mountinfo", func(t *testing.T, e Env) { os.Remove(e.Proc + "/self/mountinfo") },
			[]string{"cgroup2-mounted", "cgroup2-controllers", "cgroup2-delegated", "root-shared"}, "mountinfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := fakeNode(t)
			tt.breakf(t, env)
			failed := Failed(Check(env))
			var names []string
			for _, f := range failed {
				names = append(names, f.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.fails, ",") {
				t.Fatalf("failed %v, want %v (%v)", names, tt.fails, failed)
			}
			if len(failed) > 0 && !strings.Contains(failed[0].Detail, tt.detail) {
				t.Errorf("detail %q does not mention %q", failed[0].Detail, tt.detail)
			}
		})
	}
}
