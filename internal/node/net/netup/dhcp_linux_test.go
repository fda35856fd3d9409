package netup

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestDHCPInNetns runs the real client against a real DHCP server over a
// veth pair, inside a network namespace of its own: the test re-executes
// itself under `unshare --net --mount`, so every thread of that process
// (nclient4 and netlink use several) is in the namespace and the host's
// network is never touched; a sysfs mounted in the private mount namespace
// shows the namespace's links (their carrier).
func TestDHCPInNetns(t *testing.T) {
	if os.Getenv("NETUP_IN_NETNS") == "" {
		if os.Geteuid() != 0 {
			t.Skip("a network namespace needs root")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare(1)")
		}
		cmd := exec.Command(unshare, "--net", "--mount", os.Args[0], "-test.run=^TestDHCPInNetns$", "-test.v")
		cmd.Env = append(os.Environ(), "NETUP_IN_NETNS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in a network namespace: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}

	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		t.Fatalf("sysfs for the namespace: %v", err)
	}
	if err := LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "srv0"}, PeerName: "cli0"}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	srv, err := netlink.LinkByName("srv0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(srv, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 9, 0, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(srv); err != nil {
		t.Fatal(err)
	}

	// srv0 had no carrier when it was set up, so the kernel keeps its
	// transmit queue inactive until linkwatch sees the carrier come on
	// (up to a second after cli0 is up): an OFFER sent before that is
	// dropped. That is an artefact of the server living on the peer of a
	// veth, not something a node's DHCP server does, so bring cli0 up
	// here and wait for srv0 to be operationally up before the client
	// runs (Up sets an up link up again, harmlessly).
	cliLink, err := netlink.LinkByName("cli0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(cliLink); err != nil {
		t.Fatal(err)
	}
	waitOperUp(t, "srv0")

	serverIP := net.IPv4(10, 9, 0, 1).To4()
	var discovers atomic.Int32
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			discovers.Add(1)
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
		default:
			return
		}
		resp, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.IPv4(10, 9, 0, 50)),
			dhcpv4.WithServerIP(serverIP),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
			dhcpv4.WithOption(dhcpv4.OptRouter(serverIP)),
			dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(10, 9, 0, 53))),
			dhcpv4.WithOption(dhcpv4.OptDomainName("edge.test")),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)),
		)
		if err != nil {
			t.Errorf("reply: %v", err)
			return
		}
		if _, err := conn.WriteTo(resp.ToBytes(), peer); err != nil {
			t.Errorf("send %s: %v", typ, err)
		}
	}
	s, err := server4.NewServer("srv0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	go s.Serve()
	defer s.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	leases, err := Up(ctx, Config{SysClassNet: "/sys/class/net", Interfaces: []string{"cli0"}, Timeout: 15 * time.Second, Hostname: "kestrel-test"})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if len(leases) != 1 {
		t.Fatalf("leases = %v", leases)
	}
	l := leases[0]
	if l.Addr.String() != "10.9.0.50/24" || !l.Gateway.Equal(serverIP) || l.LeaseTime != time.Hour || l.Renew != 30*time.Minute {
		t.Errorf("lease = %v (renew %v)", l, l.Renew)
	}
	if ns, search := DNS(nil, leases); len(ns) != 1 || ns[0] != "10.9.0.53" || len(search) != 1 || search[0] != "edge.test" {
		t.Errorf("DNS = %v %v", ns, search)
	}

	t.Logf("lease after %v: %v", time.Since(start), l)
	if n := discovers.Load(); n != 1 {
		t.Errorf("server saw %d DISCOVERs, want 1: an exchange was lost and retried", n)
	}

	// The lease is applied: the address on cli0 and a default route.
	cli, _ := netlink.LinkByName("cli0")
	addrs, _ := netlink.AddrList(cli, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.50/24" {
		t.Errorf("cli0 addresses = %v", addrs)
	}
	routes, _ := netlink.RouteList(cli, netlink.FAMILY_V4)
	def := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(serverIP) {
			def = true
		}
	}
	if !def {
		t.Errorf("no default route via %v: %v", serverIP, routes)
	}
}

// waitOperUp waits (bounded) until the kernel reports link name
// operationally up, that is, linkwatch has activated its transmit queue.
func waitOperUp(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/sys/class/net/" + name + "/operstate")
		if err != nil {
			t.Fatalf("operstate of %s: %v", name, err)
		}
		if strings.TrimSpace(string(b)) == "up" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not operationally up after 5s: %s", name, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A server's lease time or T1 of 0 (or a few seconds) must not make PID 1
// renew in a tight loop; failed renewals back off.
func TestRenewClamped(t *testing.T) {
	for _, tc := range []struct {
		name            string
		lease, t1       time.Duration // 0: option absent
		wantLease, want time.Duration
	}{
		{"zero lease and T1", time.Nanosecond, time.Nanosecond, MinRenew, MinRenew},
		{"T1 of a second", time.Hour, time.Second, time.Hour, MinRenew},
		{"T1 absent, short lease", 10 * time.Second, 0, MinRenew, MinRenew},
		{"normal", 24 * time.Hour, 12 * time.Hour, 24 * time.Hour, 12 * time.Hour},
		{"T1 absent", 4 * time.Hour, 0, 4 * time.Hour, 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods := []dhcpv4.Modifier{dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15))}
			if tc.lease > 0 {
				mods = append(mods, dhcpv4.WithLeaseTime(uint32(tc.lease/time.Second)))
			}
			if tc.t1 > 0 {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(tc.t1/time.Second*time.Second)))
			}
			ack, err := dhcpv4.New(mods...)
			if err != nil {
				t.Fatal(err)
			}
			l := fromACK("eth0", ack)
			if l.LeaseTime != tc.wantLease || l.Renew != tc.want {
				t.Errorf("lease %v, renew %v; want %v, %v", l.LeaseTime, l.Renew, tc.wantLease, tc.want)
			}
		})
	}
	for failures, want := range []time.Duration{1: time.Minute, 2: 2 * time.Minute, 4: 8 * time.Minute, 9: 8 * time.Minute} {
		if failures > 0 && want > 0 {
			if got := retryDelay(failures); got != want {
				t.Errorf("retryDelay(%d) = %v, want %v", failures, got, want)
			}
		}
	}
}
