package netup

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWiredInterfaces(t *testing.T) {
	sys := t.TempDir()
	mk := func(name, typ string, device bool, extra ...string) {
		d := filepath.Join(sys, name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o644)
		if device {
			os.MkdirAll(filepath.Join(d, "device"), 0o755)
		}
		for _, e := range extra {
			os.MkdirAll(filepath.Join(d, e), 0o755)
		}
	}
	mk("lo", "772", false)
	mk("eth0", "1", true)
	mk("enp3s0", "1", true)
	mk("wlan0", "1", true, "wireless")
	mk("wlp2s0", "1", true, "phy80211")
	mk("cni0", "1", false) // bridge
	mk("flannel.1", "1", false)
	mk("usb0", "1", true) // USB NIC
	mk("ib0", "32", true) // InfiniBand
	got, err := WiredInterfaces(sys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"enp3s0", "eth0", "usb0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("WiredInterfaces = %v, want %v", got, want)
	}
	if _, err := WiredInterfaces(filepath.Join(sys, "nope")); err == nil {
		t.Error("missing sysfs accepted")
	}
}

func TestDNS(t *testing.T) {
	leases := []Lease{
		{Iface: "eth0", DNS: []net.IP{net.ParseIP("10.0.2.3")}, Domain: "example.lan"},
		{Iface: "eth1", DNS: []net.IP{net.ParseIP("10.0.2.3"), net.ParseIP("1.1.1.1")}, Search: []string{"corp", "example.lan"}},
	}
	tests := []struct {
		static []string
		want   []string
	}{
		{nil, []string{"10.0.2.3", "1.1.1.1"}},
		// Static servers first, a lease's copy of one not repeated.
		{[]string{"192.0.2.53", "1.1.1.1"}, []string{"192.0.2.53", "1.1.1.1", "10.0.2.3"}},
	}
	for _, tt := range tests {
		ns, search := DNS(tt.static, leases)
		if !reflect.DeepEqual(ns, tt.want) || !reflect.DeepEqual(search, []string{"example.lan", "corp"}) {
			t.Errorf("DNS(%v) = %v, %v; want %v", tt.static, ns, search, tt.want)
		}
	}
}
