package netconf

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/node/net/netconf/netnstest"
)

// newNS returns a netlink handle into a fresh network namespace, so the
// test never touches the host's interfaces. The namespace goes away when
// the test ends.
func newNS(t *testing.T) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(netnstest.New(t), Families...) // as on the node
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// veth creates a veth pair (dummy links need a module this kernel lacks).
func veth(t *testing.T, h *netlink.Handle, name, peer string) {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
}

func addrs(t *testing.T, h *netlink.Handle, name string) []string {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

func routes(t *testing.T, h *netlink.Handle, name string) []string {
	t.Helper()
	l, _ := h.LinkByName(name)
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		list, err := h.RouteList(l, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			dst := "default"
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
					dst = r.Dst.String()
				}
			}
			if r.Gw != nil {
				dst += " via " + r.Gw.String()
			}
			if r.Priority != 0 && fam == unix.AF_INET {
				dst += " metric " + strconv.Itoa(r.Priority)
			}
			out = append(out, dst)
		}
	}
	return out
}

func TestApplyStatic(t *testing.T) {
	h := newNS(t)
	veth(t, h, "eth0", "peer0")
	veth(t, h, "eth1", "peer1")
	cfg := Config{Interfaces: []Interface{{
		Name:      "eth0",
		Addresses: []string{"10.99.0.10/24", "fd00:99::10/64"},
		Gateway:   "10.99.0.1",
		MTU:       1400,
		Routes: []Route{
			{To: "172.31.0.0/16", Via: "10.99.0.254", Metric: 50},
			{To: "192.168.77.0/24"}, // on-link
			{To: "default", Via: "fd00:99::1", Metric: 100},
			{To: "fd10::/48", Via: "fd00:99::2"},
		},
	}, {
		Name: "eth1", DHCP: DHCPOn, MTU: 9000,
	}}}
	if err := Apply(h, cfg); err != nil {
		t.Fatal(err)
	}
	if got := addrs(t, h, "eth0"); !slices.Equal(got, []string{"10.99.0.10/24", "fd00:99::10/64"}) {
		t.Errorf("eth0 addresses %v", got)
	}
	l, _ := h.LinkByName("eth0")
	if l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0 mtu %d flags %v", l.Attrs().MTU, l.Attrs().Flags)
	}
	l1, _ := h.LinkByName("eth1")
	if l1.Attrs().MTU != 9000 {
		t.Errorf("eth1 mtu %d", l1.Attrs().MTU)
	}
	lo, _ := h.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("loopback not up")
	}
	got := routes(t, h, "eth0")
	for _, want := range []string{"default via 10.99.0.1", "172.31.0.0/16 via 10.99.0.254 metric 50", "192.168.77.0/24", "10.99.0.0/24",
		"default via fd00:99::1", "fd10::/48 via fd00:99::2"} {
		if !slices.Contains(got, want) {
			t.Errorf("routes %v lack %q", got, want)
		}
	}
	// eth1 asked for DHCP; eth0 has static addresses; the peers are not
	// wired NICs.
	links, _ := h.LinkList()
	if got := DHCPInterfaces(cfg, links, []string{"eth0", "eth1"}); !slices.Equal(got, []string{"eth1"}) {
		t.Errorf("DHCP on %v, want [eth1]", got)
	}

	// Re-applying with a changed address converges: the old ones go, even
	// a primary whose deletion takes its secondaries with it.
	l, _ = h.LinkByName("eth0")
	h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 99, 0, 12), Mask: net.CIDRMask(24, 32)}})
	cfg.Interfaces[0].Addresses = []string{"10.99.0.11/24"}
	cfg.Interfaces[0].Routes = nil
	if err := Apply(h, cfg); err != nil {
		t.Fatal(err)
	}
	if got := addrs(t, h, "eth0"); !slices.Equal(got, []string{"10.99.0.11/24"}) {
		t.Errorf("after re-apply eth0 addresses %v", got)
	}
}

func TestApplyPartialFailure(t *testing.T) {
	h := newNS(t)
	veth(t, h, "eth0", "peer0")
	err := Apply(h, Config{Interfaces: []Interface{
		{Name: "missing0", Addresses: []string{"10.1.0.1/24"}},
		{Name: "eth0", Addresses: []string{"10.2.0.1/24"}, Gateway: "10.3.0.1"}, // gateway off-subnet
	}})
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, want := range []string{"interface missing0: no such link", "interface eth0: route 0.0.0.0/0 via 10.3.0.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := addrs(t, h, "eth0"); !slices.Equal(got, []string{"10.2.0.1/24"}) {
		t.Errorf("eth0 not configured next to a failing interface: %v", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad address", Config{Interfaces: []Interface{{Name: "eth0", Addresses: []string{"10.0.0.1"}}}}, "interface eth0: addresses: \"10.0.0.1\""},
		{"bad gateway", Config{Interfaces: []Interface{{Name: "eth0", Gateway: "gw"}}}, "interface eth0: gateway"},
		{"bad mtu", Config{Interfaces: []Interface{{Name: "eth0", MTU: 10}}}, "interface eth0: mtu"},
		{"route needs via", Config{Interfaces: []Interface{{Name: "eth0", Routes: []Route{{To: "default"}}}}}, "needs via"},
		{"route mixes families", Config{Interfaces: []Interface{{Name: "eth0", Routes: []Route{{To: "10.0.0.0/8", Via: "fd00::1"}}}}}, "mixes"},
		{"duplicate", Config{Interfaces: []Interface{{Name: "eth0"}, {Name: "eth0"}}}, "listed twice"},
		{"bond mode", Config{Bonds: []Bond{{Name: "bond0", Mode: "fastest", Members: []string{"eth0"}}}}, "bond bond0: mode \"fastest\""},
		{"bond members", Config{Bonds: []Bond{{Name: "bond0", Mode: "active-backup"}}}, "members: none"},
		{"vlan id", Config{VLANs: []VLAN{{Link: "eth0", ID: 5000}}}, "vlan eth0.5000: id 5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestBondAndVLAN creates them for real when the kernel has bonding and
// 802.1Q; this build host's kernel has neither, so there the test checks
// that the failure is reported per link and the rest is still applied. The
// qemu boot test exercises them with Debian's kernel.
func TestBondAndVLAN(t *testing.T) {
	h := newNS(t)
	veth(t, h, "eth0", "peer0")
	veth(t, h, "eth1", "peer1")
	veth(t, h, "eth2", "peer2")
	cfg := Config{
		Bonds: []Bond{{Name: "bond0", Mode: "active-backup", Members: []string{"eth0", "eth1"}}},
		VLANs: []VLAN{{Link: "eth2", ID: 100}},
		Interfaces: []Interface{
			{Name: "bond0", Addresses: []string{"10.50.0.2/24"}},
			{Name: "eth2", Addresses: []string{"10.60.0.2/24"}},
			{Name: "eth2.100", DHCP: DHCPOn},
		},
	}
	err := Apply(h, cfg)
	if errors.Is(err, unix.EOPNOTSUPP) || (err != nil && strings.Contains(err.Error(), "not supported")) {
		if !strings.Contains(err.Error(), "bond bond0: create") || !strings.Contains(err.Error(), "vlan eth2.100: create") {
			t.Errorf("error does not name the failing links: %v", err)
		}
		if !strings.Contains(err.Error(), "kernel module bonding is not loaded") || !strings.Contains(err.Error(), "kernel module 8021q is not loaded") {
			t.Errorf("error does not name the missing modules: %v", err)
		}
		if got := addrs(t, h, "eth2"); !slices.Equal(got, []string{"10.60.0.2/24"}) {
			t.Errorf("eth2 not configured next to failing links: %v", got)
		}
		t.Skipf("kernel lacks bonding/802.1Q: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	bond, err := h.LinkByName("bond0")
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := bond.(*netlink.Bond); !ok || b.Mode != netlink.BOND_MODE_ACTIVE_BACKUP {
		t.Errorf("bond0 %#v", bond)
	}
	for _, m := range []string{"eth0", "eth1"} {
		l, _ := h.LinkByName(m)
		if l.Attrs().MasterIndex != bond.Attrs().Index {
			t.Errorf("%s not enslaved to bond0", m)
		}
	}
	if got := addrs(t, h, "bond0"); !slices.Equal(got, []string{"10.50.0.2/24"}) {
		t.Errorf("bond0 addresses %v", got)
	}
	v, err := h.LinkByName("eth2.100")
	if err != nil || v.(*netlink.Vlan).VlanId != 100 {
		t.Errorf("vlan %v %v", v, err)
	}
	links, _ := h.LinkList()
	if got := DHCPInterfaces(cfg, links, nil); !slices.Equal(got, []string{"eth2.100"}) {
		t.Errorf("DHCP %v", got)
	}
	// Idempotent.
	if err := Apply(h, cfg); err != nil {
		t.Errorf("second apply: %v", err)
	}
}

func TestDHCPInterfaces(t *testing.T) {
	eth := func(name string, master int) netlink.Link {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, EncapType: "ether", MasterIndex: master}}
	}
	links := []netlink.Link{
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", EncapType: "loopback", Flags: net.FlagLoopback}},
		eth("eth0", 0), eth("eth1", 0), eth("eth2", 0), eth("eth3", 7),
		&netlink.Bond{LinkAttrs: netlink.LinkAttrs{Name: "bond0"}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0", EncapType: "ether"}},
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "wlan0", EncapType: "ieee802.11"}},
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no config: every NIC", Config{}, []string{"eth0", "eth1", "eth2"}},
		{"static address turns it off", Config{Interfaces: []Interface{{Name: "eth0", Addresses: []string{"10.0.0.1/24"}}}}, []string{"eth1", "eth2"}},
		{"static plus forced dhcp", Config{Interfaces: []Interface{{Name: "eth0", Addresses: []string{"10.0.0.1/24"}, DHCP: DHCPOn}}}, []string{"eth0", "eth1", "eth2"}},
		{"dhcp off", Config{Interfaces: []Interface{{Name: "eth1", DHCP: DHCPOff}}}, []string{"eth0", "eth2"}},
		{"static only", Config{StaticOnly: true, Interfaces: []Interface{{Name: "eth2"}}}, []string{"eth2"}},
		{"bond members never, unlisted bond yes", Config{Bonds: []Bond{{Name: "bond0", Members: []string{"eth0", "eth1"}}}}, []string{"eth2", "bond0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DHCPInterfaces(tt.cfg, links, []string{"eth0", "eth1", "eth2", "eth3"}); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	got, err := ResolvConf([]string{"1.1.1.1", " 2606:4700::1111 "}, []string{"example.com", "lan"})
	if err != nil {
		t.Fatal(err)
	}
	want := "nameserver 1.1.1.1\nnameserver 2606:4700::1111\nsearch example.com lan\n"
	if !strings.HasSuffix(string(got), want) {
		t.Errorf("got %q, want suffix %q", got, want)
	}
	if _, err := ResolvConf([]string{"dns.example.com"}, nil); err == nil || !strings.Contains(err.Error(), "dns.example.com") {
		t.Errorf("hostname as nameserver: %v", err)
	}
	p := filepath.Join(t.TempDir(), "etc/resolv.conf")
	if err := WriteResolvConf(p, []string{"9.9.9.9"}, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !strings.Contains(string(b), "nameserver 9.9.9.9\n") {
		t.Errorf("written %q", b)
	}
}

func TestModules(t *testing.T) {
	tests := []struct {
		cfg  Config
		want []string
	}{
		{Config{Interfaces: []Interface{{Name: "eth0"}}}, nil},
		{Config{Bonds: []Bond{{Name: "bond0"}}}, []string{"bonding"}},
		{Config{Bonds: []Bond{{Name: "bond0"}}, VLANs: []VLAN{{Link: "bond0", ID: 5}}}, []string{"bonding", "8021q"}},
	}
	for _, tt := range tests {
		if got := Modules(tt.cfg); !slices.Equal(got, tt.want) {
			t.Errorf("Modules(%+v) = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}

// TestNewHandleFamilies checks that NewHandle opens NETLINK_ROUTE sockets
// only: another family's module (xfrm_user, nfnetlink) may be missing
// when stage 2 configures the network.
func TestNewHandleFamilies(t *testing.T) {
	before := netlinkSockets(t)
	h, err := NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	opened := 0
	for inode, proto := range netlinkSockets(t) {
		if _, ok := before[inode]; ok {
			continue
		}
		opened++
		if proto != unix.NETLINK_ROUTE {
			t.Errorf("netlink socket of protocol %d opened", proto)
		}
	}
	if opened == 0 {
		t.Error("no netlink socket opened")
	}
}

// netlinkSockets maps the inodes of this process's netlink sockets to
// their protocol (/proc/net/netlink's Eth column).
func netlinkSockets(t *testing.T) map[string]int {
	t.Helper()
	table, err := os.ReadFile("/proc/self/net/netlink")
	if err != nil {
		t.Skipf("no netlink table: %v", err)
	}
	proto := map[string]int{} // by inode
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 {
			proto[f[9]], _ = strconv.Atoi(f[1])
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, fd := range fds {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		inode, ok := strings.CutPrefix(target, "socket:[")
		if p, known := proto[strings.TrimSuffix(inode, "]")]; ok && known {
			out[inode] = p
		}
	}
	return out
}
