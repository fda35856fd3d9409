// Package netup brings up networking for stage 2: the loopback device,
// and DHCPv4 on every wired interface (insomniacslk/dhcp's nclient4 for
// the protocol, vishvananda/netlink to apply the address and routes),
// keeps the leases renewed, and writes resolv.conf.
//
// "Wired" means a physical device (it has a /sys/class/net/<if>/device
// link) of ARP type Ethernet that is not wireless; bridges, veths and
// other virtual links k3s creates later are never touched.
//
// Which interfaces get DHCP is the caller's decision when it passes a
// list (netconf.DHCPInterfaces, from the config); resolv.conf is rendered
// by netconf.WriteResolvConf from DNS(static servers, leases).
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

// DNS is what resolv.conf lists: the static name servers first (the
// config's), then those of the leases, in order, without duplicates, and
// the leases' search domains; for netconf.WriteResolvConf. Every rewrite
// goes through it, so a lease renewal never drops the static servers.
func DNS(static []string, leases []Lease) (nameservers, search []string) {
	seen := map[string]bool{}
	addNS := func(ns string) {
		if k := "n " + ns; !seen[k] {
			seen[k] = true
			nameservers = append(nameservers, ns)
		}
	}
	for _, ns := range static {
		addNS(ns)
	}
	for _, l := range leases {
		for _, s := range append(append([]string{}, l.Search...), l.Domain) {
			if s != "" && !seen["s "+s] {
				seen["s "+s] = true
				search = append(search, s)
			}
		}
		for _, ns := range l.DNS {
			addNS(ns.String())
		}
	}
	return nameservers, search
}
