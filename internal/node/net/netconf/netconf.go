// Package netconf applies a static network configuration with netlink:
// bonds and their members, VLAN links, MTU, addresses, the default gateway
// and extra routes, and decides which interfaces DHCP should run on. It
// also renders resolv.conf.
//
// All netlink calls go through a *netlink.Handle given by the caller, so
// the same code configures the node (a handle in the initial namespace) and
// is tested in a throw-away network namespace.
//
// Kernel modules: every call here is rtnetlink (NETLINK_ROUTE, built in),
// and only creating a bond needs a module (bonding) and a VLAN (8021q);
// Modules lists them for a config, and a missing one is named in Apply's
// error. NewHandle opens NETLINK_ROUTE alone: netlink.NewHandle() without
// families also opens NETLINK_XFRM (module xfrm_user, not in the image)
// and NETLINK_NETFILTER (nfnetlink, which stage 2 loads only after the
// node is ready), and fails with "protocol not supported" before then.
//
// The config is the truth for the interfaces it lists: on an interface
// whose DHCP is off, addresses that the config does not list are removed
// (IPv6 link-local ones excepted), so re-applying converges. Interfaces it
// does not list are left as they are.
//
// Routes are added or replaced, never removed: a route dropped from the
// config stays until the next boot.
//
// Limits: no Wi-Fi, bridges, tunnels, IPv6 router advertisement settings,
// policy routing, or bond options beyond mode and MII monitoring; a bond or
// VLAN that already exists is reused as it is (its mode is not changed in
// place); DHCP itself is run by the caller on the interfaces Apply returns.
package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// DHCPMode says whether an interface asks for a DHCP lease.
type DHCPMode int

const (
	// DHCPAuto: DHCP on when the interface has no static address.
	DHCPAuto DHCPMode = iota
	DHCPOn
	DHCPOff
)

// Config is the node's network configuration.
type Config struct {
	Interfaces []Interface
	Bonds      []Bond
	VLANs      []VLAN
	// StaticOnly turns DHCP off on every physical interface not listed in
	// Interfaces; by default they get DHCP, as on k3OS.
	StaticOnly bool
}

// Interface is the layer-3 configuration of one link (physical, bond or
// VLAN), by name.
type Interface struct {
	Name      string
	DHCP      DHCPMode
	Addresses []string // CIDR: "192.168.1.10/24", "fd00::10/64"
	Gateway   string   // default route via this address (IPv4 or IPv6)
	MTU       int      // 0: leave as is
	Routes    []Route
}

// Route is an extra route through an interface.
type Route struct {
	To     string // CIDR, or "default"
	Via    string // gateway; empty for an on-link route
	Metric int
}

// Bond aggregates member links.
type Bond struct {
	Name    string
	Mode    string // balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb
	Members []string
	MIIMon  int // link monitoring interval in ms; default 100
}

// VLAN is an 802.1Q link on top of another link.
type VLAN struct {
	Name string // e.g. "eth0.100"; default <link>.<id>
	Link string
	ID   int
}

// Families are the netlink protocols netconf uses.
var Families = []int{unix.NETLINK_ROUTE}

// NewHandle opens a handle in the current network namespace with the
// Families only.
func NewHandle() (*netlink.Handle, error) {
	return netlink.NewHandle(Families...)
}

// linkModules are the kernel modules behind the link kinds Apply creates
// (the kernel's "rtnl-link-<kind>" aliases).
var linkModules = map[string]string{"bond": "bonding", "vlan": "8021q"}

// Modules are the kernel modules cfg needs loaded before Apply: bonding
// for bonds, 8021q for VLANs.
func Modules(cfg Config) []string {
	var out []string
	if len(cfg.Bonds) > 0 {
		out = append(out, linkModules["bond"])
	}
	if len(cfg.VLANs) > 0 {
		out = append(out, linkModules["vlan"])
	}
	return out
}

// linkAdd creates l, naming the kernel module when the kernel does not
// know its kind: without it the kernel answers EOPNOTSUPP.
func linkAdd(h *netlink.Handle, l netlink.Link) error {
	err := h.LinkAdd(l)
	if errors.Is(err, unix.EOPNOTSUPP) {
		if m, ok := linkModules[l.Type()]; ok {
			return fmt.Errorf("kernel module %s is not loaded: %w", m, err)
		}
	}
	return err
}

// Apply validates cfg, then creates bonds and VLANs (their Modules loaded
// first by the caller) and configures every listed interface. Loopback is brought up. Validation errors apply
// nothing; after that, an interface that fails (missing NIC, refused
// route) is reported and the others are still configured. Which links then
// need DHCP is DHCPInterfaces's answer.
func Apply(h *netlink.Handle, cfg Config) error {
	plan, err := parse(cfg)
	if err != nil {
		return err
	}
	var errs []error
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			errs = append(errs, fmt.Errorf("netconf lo: up: %w", err))
		}
	}
	for _, b := range cfg.Bonds {
		if err := applyBond(h, b); err != nil {
			errs = append(errs, fmt.Errorf("netconf bond %s: %w", b.Name, err))
		}
	}
	for _, v := range cfg.VLANs {
		if err := applyVLAN(h, v); err != nil {
			errs = append(errs, fmt.Errorf("netconf vlan %s: %w", vlanName(v), err))
		}
	}
	for _, ifc := range plan {
		if err := applyInterface(h, ifc); err != nil {
			errs = append(errs, fmt.Errorf("netconf interface %s: %w", ifc.name, err))
		}
	}
	return errors.Join(errs...)
}

// Validate checks cfg without touching the system.
func Validate(cfg Config) error {
	_, err := parse(cfg)
	return err
}

// DHCPInterfaces decides, for the given links (in their order), which get
// DHCP: a listed interface per its DHCPMode (auto: when it has no
// address); an unlisted bond or VLAN that the config creates gets it, and
// so does an unlisted wired NIC (named in wired, e.g. from
// netup.WiredInterfaces) unless StaticOnly; loopback, bond members and
// anything else (Wi-Fi, veths, bridges) never do.
func DHCPInterfaces(cfg Config, links []netlink.Link, wired []string) []string {
	listed := map[string]Interface{}
	for _, i := range cfg.Interfaces {
		listed[i.Name] = i
	}
	created := map[string]bool{}
	members := map[string]bool{}
	for _, b := range cfg.Bonds {
		created[b.Name] = true
		for _, m := range b.Members {
			members[m] = true
		}
	}
	for _, v := range cfg.VLANs {
		created[vlanName(v)] = true
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if members[a.Name] || a.MasterIndex != 0 || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		if i, ok := listed[a.Name]; ok {
			if i.DHCP == DHCPOn || (i.DHCP == DHCPAuto && len(i.Addresses) == 0) {
				out = append(out, a.Name)
			}
			continue
		}
		if created[a.Name] || (!cfg.StaticOnly && slices.Contains(wired, a.Name)) {
			out = append(out, a.Name)
		}
	}
	return out
}

// ResolvConf renders /etc/resolv.conf. libc resolvers use the first three
// nameservers only; all are written so that k3s's CoreDNS sees them too.
func ResolvConf(nameservers, search []string) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Generated by Kestrel from the config; edits are lost at boot.\n")
	for _, ns := range nameservers {
		a, err := netip.ParseAddr(strings.TrimSpace(ns))
		if err != nil {
			return nil, fmt.Errorf("dns nameserver %q: not an IP address", ns)
		}
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	if len(search) > 0 {
		for _, d := range search {
			if d == "" || strings.ContainsAny(d, " \t\n") {
				return nil, fmt.Errorf("dns search domain %q: invalid", d)
			}
		}
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	return []byte(b.String()), nil
}

// WriteResolvConf renders and atomically writes path (/etc/resolv.conf).
func WriteResolvConf(path string, nameservers, search []string) error {
	data, err := ResolvConf(nameservers, search)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644, atomicfile.NoChown, atomicfile.NoChown)
}

// parsed is an Interface with its addresses and routes parsed.
type parsed struct {
	name   string
	dhcp   bool
	mtu    int
	addrs  []*netlink.Addr
	routes []netlink.Route // LinkIndex filled at apply time
}

func parse(cfg Config) ([]parsed, error) {
	var errs []error
	seen := map[string]bool{}
	for _, b := range cfg.Bonds {
		if b.Name == "" || len(b.Name) > 15 {
			errs = append(errs, fmt.Errorf("netconf bond %q: name must be 1-15 characters", b.Name))
		}
		if netlink.StringToBondMode(b.Mode) == netlink.BOND_MODE_UNKNOWN {
			errs = append(errs, fmt.Errorf("netconf bond %s: mode %q: want balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb or balance-alb", b.Name, b.Mode))
		}
		if len(b.Members) == 0 {
			errs = append(errs, fmt.Errorf("netconf bond %s: members: none", b.Name))
		}
	}
	for _, v := range cfg.VLANs {
		if v.ID < 1 || v.ID > 4094 {
			errs = append(errs, fmt.Errorf("netconf vlan %s: id %d: want 1-4094", vlanName(v), v.ID))
		}
		if v.Link == "" {
			errs = append(errs, fmt.Errorf("netconf vlan %s: link: empty", vlanName(v)))
		}
		if len(vlanName(v)) > 15 {
			errs = append(errs, fmt.Errorf("netconf vlan %s: name longer than 15 characters", vlanName(v)))
		}
	}
	var out []parsed
	for _, i := range cfg.Interfaces {
		p := parsed{name: i.Name, mtu: i.MTU, dhcp: i.DHCP == DHCPOn || (i.DHCP == DHCPAuto && len(i.Addresses) == 0)}
		fail := func(key, format string, args ...any) {
			errs = append(errs, fmt.Errorf("netconf interface %s: %s: %s", i.Name, key, fmt.Sprintf(format, args...)))
		}
		if i.Name == "" {
			fail("name", "empty")
		}
		if seen[i.Name] {
			fail("name", "listed twice")
		}
		seen[i.Name] = true
		if i.MTU != 0 && (i.MTU < 68 || i.MTU > 65535) {
			fail("mtu", "%d out of range 68-65535", i.MTU)
		}
		for _, a := range i.Addresses {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(a))
			if err != nil {
				fail("addresses", "%q is not an address/prefix (e.g. 192.168.1.10/24)", a)
				continue
			}
			p.addrs = append(p.addrs, &netlink.Addr{IPNet: &net.IPNet{
				IP:   net.IP(pfx.Addr().AsSlice()),
				Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen()),
			}})
		}
		if i.Gateway != "" {
			gw, err := netip.ParseAddr(i.Gateway)
			if err != nil {
				fail("gateway", "%q is not an IP address", i.Gateway)
			} else {
				p.routes = append(p.routes, netlink.Route{Dst: defaultDst(gw.Is4()), Gw: net.IP(gw.AsSlice())})
			}
		}
		for _, r := range i.Routes {
			route, err := parseRoute(r)
			if err != nil {
				fail("routes", "%v", err)
				continue
			}
			p.routes = append(p.routes, route)
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

func parseRoute(r Route) (netlink.Route, error) {
	var route netlink.Route
	var v4 bool
	var via netip.Addr
	if r.Via != "" {
		a, err := netip.ParseAddr(r.Via)
		if err != nil {
			return route, fmt.Errorf("via %q is not an IP address", r.Via)
		}
		via = a
		route.Gw = net.IP(a.AsSlice())
	}
	if r.To == "default" || r.To == "" {
		if !via.IsValid() {
			return route, fmt.Errorf("to %q needs via", r.To)
		}
		v4 = via.Is4()
		route.Dst = defaultDst(v4)
	} else {
		pfx, err := netip.ParsePrefix(r.To)
		if err != nil {
			return route, fmt.Errorf("to %q is not a prefix (e.g. 10.0.0.0/8)", r.To)
		}
		pfx = pfx.Masked()
		v4 = pfx.Addr().Is4()
		route.Dst = &net.IPNet{IP: net.IP(pfx.Addr().AsSlice()), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}
		if via.IsValid() && via.Is4() != v4 {
			return route, fmt.Errorf("to %q via %q mixes IPv4 and IPv6", r.To, r.Via)
		}
	}
	if r.Metric < 0 {
		return route, fmt.Errorf("metric %d is negative", r.Metric)
	}
	route.Priority = r.Metric
	return route, nil
}

func defaultDst(v4 bool) *net.IPNet {
	if v4 {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

func vlanName(v VLAN) string {
	if v.Name != "" {
		return v.Name
	}
	return fmt.Sprintf("%s.%d", v.Link, v.ID)
}

func applyBond(h *netlink.Handle, b Bond) error {
	link, err := h.LinkByName(b.Name)
	if err != nil {
		bond := netlink.NewLinkBond(netlink.LinkAttrs{Name: b.Name})
		bond.Mode = netlink.StringToBondMode(b.Mode)
		bond.Miimon = b.MIIMon
		if bond.Miimon == 0 {
			bond.Miimon = 100
		}
		if err := linkAdd(h, bond); err != nil {
			return fmt.Errorf("create (mode %s): %w", b.Mode, err)
		}
		if link, err = h.LinkByName(b.Name); err != nil {
			return err
		}
	} else if link.Type() != "bond" {
		return fmt.Errorf("a %s link of that name exists", link.Type())
	}
	var errs []error
	for _, name := range b.Members {
		m, err := h.LinkByName(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", name, err))
			continue
		}
		if m.Attrs().MasterIndex == link.Attrs().Index {
			continue
		}
		// The kernel enslaves only links that are down.
		if err := h.LinkSetDown(m); err != nil {
			errs = append(errs, fmt.Errorf("member %s: down: %w", name, err))
			continue
		}
		if err := h.LinkSetMasterByIndex(m, link.Attrs().Index); err != nil {
			errs = append(errs, fmt.Errorf("member %s: enslave: %w", name, err))
			continue
		}
		if err := h.LinkSetUp(m); err != nil {
			errs = append(errs, fmt.Errorf("member %s: up: %w", name, err))
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		errs = append(errs, fmt.Errorf("up: %w", err))
	}
	return errors.Join(errs...)
}

func applyVLAN(h *netlink.Handle, v VLAN) error {
	name := vlanName(v)
	if l, err := h.LinkByName(name); err == nil {
		if vl, ok := l.(*netlink.Vlan); !ok || vl.VlanId != v.ID {
			return fmt.Errorf("a different %s link of that name exists", l.Type())
		}
		return h.LinkSetUp(l)
	}
	parent, err := h.LinkByName(v.Link)
	if err != nil {
		return fmt.Errorf("link %s: %w", v.Link, err)
	}
	if err := h.LinkSetUp(parent); err != nil {
		return fmt.Errorf("link %s: up: %w", v.Link, err)
	}
	vl := &netlink.Vlan{
		LinkAttrs:    netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index},
		VlanId:       v.ID,
		VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
	}
	if err := linkAdd(h, vl); err != nil {
		return fmt.Errorf("create (id %d on %s): %w", v.ID, v.Link, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

func applyInterface(h *netlink.Handle, p parsed) error {
	link, err := h.LinkByName(p.name)
	if err != nil {
		return fmt.Errorf("no such link: %w", err)
	}
	if p.mtu != 0 && link.Attrs().MTU != p.mtu {
		if err := h.LinkSetMTU(link, p.mtu); err != nil {
			return fmt.Errorf("mtu %d: %w", p.mtu, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	var errs []error
	// Stale addresses go first: deleting a primary address also deletes
	// the secondaries of its subnet, which may include a configured one.
	if !p.dhcp {
		current, err := h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			errs = append(errs, fmt.Errorf("list addresses: %w", err))
		}
		for _, c := range current {
			if c.IP.IsLinkLocalUnicast() && c.IP.To4() == nil {
				continue
			}
			if !slices.ContainsFunc(p.addrs, func(a *netlink.Addr) bool { return a.IPNet.String() == c.IPNet.String() }) {
				// EADDRNOTAVAIL: gone with the primary deleted just before.
				if err := h.AddrDel(link, &c); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
					errs = append(errs, fmt.Errorf("remove address %s: %w", c.IPNet, err))
				}
			}
		}
	}
	for _, a := range p.addrs {
		if err := h.AddrReplace(link, a); err != nil {
			errs = append(errs, fmt.Errorf("address %s: %w", a.IPNet, err))
		}
	}
	for _, r := range p.routes {
		r.LinkIndex = link.Attrs().Index
		if r.Gw == nil {
			r.Scope = netlink.SCOPE_LINK
		}
		if r.Dst.IP.To4() == nil {
			r.Family = unix.AF_INET6
		} else {
			r.Family = unix.AF_INET
		}
		if err := h.RouteReplace(&r); err != nil {
			via := ""
			if r.Gw != nil {
				via = " via " + r.Gw.String()
			}
			errs = append(errs, fmt.Errorf("route %s%s: %w", r.Dst, via, err))
		}
	}
	return errors.Join(errs...)
}
