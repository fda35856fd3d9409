package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	urand "github.com/u-root/uio/rand"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LoopbackUp sets lo up (the kernel adds 127.0.0.1/8 and ::1 itself).
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// Config tunes Up.
type Config struct {
	SysClassNet string        // "/sys/class/net"
	Interfaces  []string      // nil: every wired interface
	Timeout     time.Duration // per interface, for the first lease
	Hostname    string        // sent to the server (option 12)
	Logf        func(format string, args ...any)
	// OnRenew is called after a renewal changed the lease, so the caller
	// can rewrite resolv.conf.
	OnRenew func(Lease)
}

// Up sets every wired interface up, runs DHCP on all of them in parallel
// and applies the leases. Leases stay renewed until ctx ends. It returns
// the leases it got and the errors of the interfaces that got none.
func Up(ctx context.Context, cfg Config) ([]Lease, error) {
	useInsecureRandom()
	ifs := cfg.Interfaces
	if ifs == nil {
		var err error
		if ifs, err = WiredInterfaces(cfg.SysClassNet); err != nil {
			return nil, err
		}
	}
	if len(ifs) == 0 {
		return nil, errors.New("no wired network interface (is the NIC driver module loaded?)")
	}
	var (
		mu     sync.Mutex
		leases []Lease
		errs   []error
		wg     sync.WaitGroup
	)
	for _, name := range ifs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := configure(ctx, name, cfg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			leases = append(leases, l)
		}()
	}
	wg.Wait()
	return leases, errors.Join(errs...)
}

// xidRandom is the source u-root's rand gives the DHCP library for its
// transaction IDs: getrandom(2) with GRND_INSECURE, which never blocks
// and never waits for the kernel's CRNG (Linux 5.6 and later). A DHCP
// transaction ID needs no cryptographic strength.
//
// Why: left alone, u-root's rand polls getrandom(GRND_NONBLOCK) in a busy
// loop until the CRNG is ready, and its other source, /dev/urandom (its
// UROOT_NOHWRNG switch, which Kestrel used before), waits for the CRNG
// too in 6.1. On a first boot without a saved seed or RDRAND that held
// DHCP, and so the ready line, for up to ~0.3 s under TCG (more on a
// VM without an RNG: up to two minutes of a spinning CPU were seen).
// u-root's rand.Reader is an exported variable for this; the DHCP library
// is its only user in the kestrel binary.
type xidRandom struct{}

func (xidRandom) Read(b []byte) (int, error) { return xidRandom{}.ReadContext(context.Background(), b) }

func (xidRandom) ReadContext(_ context.Context, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Getrandom(b[n:], unix.GRND_INSECURE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("getrandom(GRND_INSECURE): %w", err)
		}
		n += m
	}
	return n, nil
}

// useInsecureRandom installs xidRandom as u-root rand's source, once, if
// this kernel has GRND_INSECURE; otherwise u-root's own source stays. It
// is package state because what it sets is: urand.Reader is a global of
// u-root's, which the DHCP clients of every interface (and of a later
// Up) read; setting it once keeps that write from racing their reads.
var useInsecureRandom = sync.OnceFunc(func() {
	var b [1]byte
	if _, err := unix.Getrandom(b[:], unix.GRND_INSECURE); err == nil {
		urand.Reader = xidRandom{}
	}
})

func configure(ctx context.Context, name string, cfg Config) (Lease, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return Lease{}, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return Lease{}, fmt.Errorf("set up: %w", err)
	}
	// A DISCOVER sent before the link has carrier is lost and costs a
	// whole retry timeout; wait for carrier (bounded: a link without a
	// cable still gets its DHCP attempts, which then time out).
	waitCarrier(ctx, filepath.Join(cfg.SysClassNet, name, "carrier"), min(cfg.Timeout, 5*time.Second))
	c, err := nclient4.New(name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(4))
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp client: %w", err)
	}
	var mods []dhcpv4.Modifier
	if cfg.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(cfg.Hostname)))
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	nl, err := c.Request(rctx, mods...)
	cancel()
	if err != nil {
		c.Close()
		return Lease{}, fmt.Errorf("dhcp: %w", err)
	}
	l := fromACK(name, nl.ACK)
	if err := apply(link, l); err != nil {
		c.Close()
		return l, err
	}
	go func() {
		defer func() { // a bug in the renewal must not take PID 1 down
			if r := recover(); r != nil && cfg.Logf != nil {
				cfg.Logf("dhcp %s: renewal stopped: panic: %v", name, r)
			}
		}()
		keep(ctx, c, link, nl, l, cfg, mods)
	}()
	return l, nil
}

// waitCarrier polls the sysfs carrier file until it reads 1 or max has
// passed. sysfs, not netlink's IFF_RUNNING: the kernel's linkwatch
// updates the latter up to a second late.
func waitCarrier(ctx context.Context, carrierFile string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		b, err := os.ReadFile(carrierFile)
		if err != nil || strings.TrimSpace(string(b)) == "1" {
			return // no such file (an odd link or sysfs path): do not wait
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// keep renews the lease at T1 until ctx ends; when renewal fails past the
// lease time it starts over with a new request.
func keep(ctx context.Context, c *nclient4.Client, link netlink.Link, nl *nclient4.Lease, l Lease, cfg Config, mods []dhcpv4.Modifier) {
	defer c.Close()
	got := time.Now()
	wait := l.Renew
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		next, err := c.Renew(rctx, nl, mods...)
		if err != nil && time.Since(got) > l.LeaseTime {
			next, err = c.Request(rctx, mods...)
		}
		cancel()
		if err != nil {
			if cfg.Logf != nil {
				cfg.Logf("dhcp %s: renew: %v", l.Iface, err)
			}
			failures++
			wait = retryDelay(failures)
			continue
		}
		failures = 0
		nl, got = next, time.Now()
		nlease := fromACK(l.Iface, next.ACK)
		if err := apply(link, nlease); err != nil && cfg.Logf != nil {
			cfg.Logf("dhcp %s: %v", l.Iface, err)
		}
		if cfg.OnRenew != nil && nlease.String() != l.String() {
			cfg.OnRenew(nlease)
		}
		l, wait = nlease, nlease.Renew
	}
}

// MinRenew is the least time between two renewals: a server that
// offers a lease or T1 of 0 (or a few seconds) would otherwise have PID 1
// renew in a tight loop. The address may then outlive a lease that short;
// the next renewal puts that right.
const MinRenew = time.Minute

// maxRetry bounds the backoff between failed renewals: short enough to
// renew a lease of typical length before it runs out.
const maxRetry = 8 * time.Minute

// retryDelay is the wait after the failures-th failed renewal in a row:
// MinRenew, doubled for each further failure, up to maxRetry.
func retryDelay(failures int) time.Duration {
	d := MinRenew
	for i := 1; i < failures && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// fromACK reads a lease from the server's ACK, the lease time and T1
// clamped to at least MinRenew.
func fromACK(iface string, ack *dhcpv4.DHCPv4) Lease {
	l := Lease{
		Iface:     iface,
		Addr:      net.IPNet{IP: ack.YourIPAddr, Mask: ack.SubnetMask()},
		DNS:       ack.DNS(),
		Domain:    ack.DomainName(),
		Hostname:  ack.HostName(),
		LeaseTime: ack.IPAddressLeaseTime(time.Hour),
	}
	if l.Addr.Mask == nil {
		l.Addr.Mask = l.Addr.IP.DefaultMask()
	}
	l.LeaseTime = max(l.LeaseTime, MinRenew)
	l.Renew = max(ack.IPAddressRenewalTime(l.LeaseTime/2), MinRenew)
	if gw := ack.Router(); len(gw) > 0 {
		l.Gateway = gw[0]
	}
	for _, r := range ack.ClasslessStaticRoute() {
		l.Routes = append(l.Routes, Route{Dst: *r.Dest, Gw: r.Router})
	}
	if s := ack.DomainSearch(); s != nil {
		l.Search = s.Labels
	}
	return l
}

func apply(link netlink.Link, l Lease) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.IP, Mask: l.Addr.Mask}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("add address %s: %w", l.Addr.String(), err)
	}
	idx := link.Attrs().Index
	routes := l.Routes
	if len(routes) == 0 && l.Gateway != nil {
		routes = []Route{{Gw: l.Gateway}}
	}
	for _, r := range routes {
		nr := &netlink.Route{LinkIndex: idx, Gw: r.Gw}
		if r.Dst.IP != nil {
			dst := r.Dst
			nr.Dst = &dst
		}
		if r.Gw == nil || r.Gw.Equal(net.IPv4zero) {
			nr.Gw, nr.Scope = nil, netlink.SCOPE_LINK
		}
		if err := netlink.RouteReplace(nr); err != nil {
			return fmt.Errorf("add route %v via %v: %w", nr.Dst, r.Gw, err)
		}
	}
	return nil
}
