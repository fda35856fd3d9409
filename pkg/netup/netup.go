// Package netup brings up networking for stage 2: the loopback device,
// and DHCPv4 on every wired interface (insomniacslk/dhcp's nclient4 for
// the protocol, vishvananda/netlink to apply the address and routes),
// keeps the leases renewed, and writes resolv.conf.
//
// "Wired" means a physical device (it has a /sys/class/net/<if>/device
// link) of ARP type Ethernet that is not wireless; bridges, veths and
// other virtual links k3s creates later are never touched.
//
// Limits: IPv4 only (no DHCPv6, no SLAAC handling beyond the kernel's
// default), no static addresses, no Wi-Fi, no link-state watching (a cable
// plugged in after boot is not picked up); on lease loss the address is
// kept until a new lease replaces it.
package netup

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Lease is what a DHCP server gave one interface.
type Lease struct {
	Iface     string
	Addr      net.IPNet
	Gateway   net.IP
	Routes    []Route // classless static routes (option 121); when set, Gateway is ignored
	DNS       []net.IP
	Search    []string
	Domain    string
	Hostname  string
	LeaseTime time.Duration
	Renew     time.Duration // T1
}

// Route is one classless static route.
type Route struct {
	Dst net.IPNet
	Gw  net.IP
}

func (l Lease) String() string {
	return fmt.Sprintf("%s %s gw %v dns %v lease %v", l.Iface, l.Addr.String(), l.Gateway, l.DNS, l.LeaseTime)
}

// WiredInterfaces lists the wired Ethernet interfaces under sysClassNet
// (normally /sys/class/net), sorted by name.
func WiredInterfaces(sysClassNet string) ([]string, error) {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		dir := filepath.Join(sysClassNet, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue // virtual: lo, bridges, veth, tunnels
		}
		if exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) {
			continue
		}
		typ, err := os.ReadFile(filepath.Join(dir, "type"))
		if err != nil || strings.TrimSpace(string(typ)) != "1" { // ARPHRD_ETHER
			continue
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ResolvConf renders resolv.conf for leases: their name servers in order,
// without duplicates, and their search domains.
func ResolvConf(leases []Lease) string {
	var b strings.Builder
	var ifs []string
	for _, l := range leases {
		ifs = append(ifs, l.Iface)
	}
	fmt.Fprintf(&b, "# written by kestrel from DHCP on %s\n", orDash(strings.Join(ifs, ", ")))
	seen := map[string]bool{}
	var search []string
	for _, l := range leases {
		for _, s := range append(append([]string{}, l.Search...), l.Domain) {
			if s != "" && !seen["s "+s] {
				seen["s "+s] = true
				search = append(search, s)
			}
		}
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	n := 0
	for _, l := range leases {
		for _, ns := range l.DNS {
			if k := "n " + ns.String(); !seen[k] && n < 3 { // libc reads at most 3
				seen[k] = true
				n++
				fmt.Fprintf(&b, "nameserver %s\n", ns)
			}
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteResolvConf writes ResolvConf(leases) to path atomically.
func WriteResolvConf(path string, leases []Lease) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(ResolvConf(leases)), 0o644); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	return nil
}
