package sysctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeProc(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestApply(t *testing.T) {
	proc := fakeProc(t, "net/ipv4/ip_forward", "vm/swappiness", "net/ipv4/conf/eth0.100/rp_filter", "net/ipv4/ip_local_port_range")
	values := map[string]string{
		"net.ipv4.ip_forward":              "1",
		"vm/swappiness":                    "10",
		"net/ipv4/conf/eth0.100/rp_filter": "2",
		"net.ipv4.ip_local_port_range":     "32768 60999",
	}
	if err := Apply(proc, values); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"net/ipv4/ip_forward":              "1\n",
		"vm/swappiness":                    "10\n",
		"net/ipv4/conf/eth0.100/rp_filter": "2\n",
		"net/ipv4/ip_local_port_range":     "32768 60999\n",
	} {
		got, _ := os.ReadFile(filepath.Join(proc, file))
		if string(got) != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	proc := fakeProc(t, "vm/swappiness")
	err := Apply(proc, map[string]string{
		"vm.swappiness":   "5",
		"net.no.such.key": "1",
		"bad..key":        "1",
		"../escape":       "1",
	})
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, s := range []string{`"net.no.such.key": no such key`, `"bad..key": invalid key component`, `"../escape"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	got, _ := os.ReadFile(filepath.Join(proc, "vm/swappiness"))
	if string(got) != "5\n" {
		t.Errorf("good key not applied next to bad ones: %q", got)
	}
}

func TestPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":              "net/ipv4/ip_forward",
		"net/ipv4/ip_forward":              "net/ipv4/ip_forward",
		"/net/ipv4/conf/eth0.1/forwarding": "net/ipv4/conf/eth0.1/forwarding",
		" kernel.pid_max ":                 "kernel/pid_max",
	} {
		got, err := Path(key)
		if err != nil || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "a/../b", "net."} {
		if _, err := Path(bad); err == nil {
			t.Errorf("Path(%q): expected an error", bad)
		}
	}
}

// TestRealProc writes a harmless key of the test's own network namespace
// when running as root: the value written is the one already set.
func TestRealProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cur, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Skip(err)
	}
	if err := Write(ProcSys, "net.ipv4.ip_forward", strings.TrimSpace(string(cur))); err != nil {
		t.Fatal(err)
	}
	if err := Write(ProcSys, "net.ipv4.ip_forward", "not-a-number"); err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward") {
		t.Errorf("invalid value: error %v, want one naming the key", err)
	}
}
