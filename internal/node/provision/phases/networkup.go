package phases

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/access/users"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
	"github.com/kestrel-os/kestrel/internal/node/net/netup"
	"github.com/kestrel-os/kestrel/internal/node/net/ntp"
	"github.com/kestrel-os/kestrel/internal/node/net/urlfetch"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
)

// readLater are boot-phase keys that are read again after the network
// sources merged, so a late change takes effect this boot: static DNS
// (NetworkUp rewrites resolv.conf) and registries (the k3s hook writes
// registries.yaml after this phase).
var readLater = map[string]bool{"kestrel.dns_nameservers": true, "kestrel.registries": true}

// ntpTimeout bounds the time sync at network-up: the node is not declared
// ready before it, and a node without a reachable server must still come up.
const ntpTimeout = 20 * time.Second

// NetworkUp is the network-up phase (a stage 2 NetworkUp hook; run it
// before hooks that read Config, such as k3s): metadata services and
// config_url are read and merged after the local sources, the boot-phase
// keys they changed are applied now, remote SSH keys are fetched, the
// clock is set, static DNS is put back in front of DHCP's, and run_cmd
// runs.
func (r *Runner) NetworkUp(ctx context.Context, sys *stage2.System) error {
	r.mu.Lock()
	src, before, nErrs := r.src, r.merged, len(r.errs)
	r.mu.Unlock()
	if src == nil {
		return errors.New("the boot phase did not run")
	}
	netRaws := datasource.Network(ctx, src, before, r.o.Net)
	res, err := src.Merge()
	if err != nil {
		return fmt.Errorf("merge config: %w", err)
	}
	var fetchErrs []string
	for i, e := range res.Errors {
		var ce *config.Error
		var ces config.Errors
		if !errors.As(e, &ce) && !errors.As(e, &ces) {
			fetchErrs = append(fetchErrs, e.Error()) // not reproduced by replaying the documents
		}
		if i < nErrs {
			continue // reported by the boot phase
		}
		for _, line := range ErrorLines(e) {
			sys.Warn("config: %s %s", line, skipNote(e))
		}
	}
	cfg := r.Config()
	if changed := config.Changed(before, res.Config); len(changed) > 0 {
		applied := cloneConfig(res.Config)
		if err := applied.HashPasswords(r.o.Random); err != nil {
			sys.Warn("config: %v", err)
		}
		only := map[string]bool{}
		var late, next []string
		for _, k := range changed {
			if lateKeys[k.Path] {
				only[k.Path] = true
				late = append(late, k.Path)
			} else if k.Phase != config.PhaseNetworkUp && !readLater[k.Path] {
				next = append(next, k.Path)
			}
		}
		r.mu.Lock()
		r.merged, r.cfg, r.errs = res.Config, applied, res.Errors
		r.mu.Unlock()
		cfg = applied
		if len(late) > 0 {
			sys.Logf("config: network sources changed %s: applying now", strings.Join(late, ", "))
			r.applyBoot(ctx, sys, applied, only)
		}
		if len(next) > 0 {
			sys.Warn("config: network sources changed %s: applied at the next boot", strings.Join(next, ", "))
		}
	} else {
		r.mu.Lock()
		r.errs = res.Errors
		r.mu.Unlock()
	}
	if r.o.Cache != "" {
		r.mu.Lock()
		docs := append(append([]datasource.Raw(nil), r.local...), netRaws...)
		r.mu.Unlock()
		if err := datasource.SaveCache(r.o.Cache, datasource.Cache{Documents: docs, Errors: fetchErrs}); err != nil {
			sys.Warn("config: %v", err)
		}
	}

	if cfg.Kestrel.AllowInsecureHTTP {
		sys.Warn("%s is set: config_url and key URLs may come over plain http, and anyone on the network path can then change this node's config and SSH keys", urlfetch.OptIn)
	}
	step("ssh_authorized_keys", sys.Warn, func() error { return r.remoteKeys(ctx, cfg) })
	if len(cfg.Kestrel.NTPServers) > 0 && r.o.Clock != nil {
		step("kestrel.ntp_servers", sys.Warn, func() error { return r.syncTime(ctx, sys, cfg.Kestrel.NTPServers) })
	}
	// A network source may have changed the static servers: lease
	// renewals rewrite resolv.conf with the new ones too.
	ns := Nameservers(cfg)
	sys.SetStaticDNS(ns)
	if len(ns) > 0 {
		step("kestrel.dns_nameservers", sys.Warn, func() error {
			all, search := netup.DNS(ns, sys.Leases())
			return netconf.WriteResolvConf(r.path("/etc/resolv.conf"), all, search)
		})
	}
	if len(cfg.RunCmd) > 0 {
		r.background(ctx, sys, "run_cmd", cfg) // after boot_cmd
	}
	return nil
}

// remoteKeys fetches github:, gitlab: and URL key entries and rewrites
// the authorized_keys of the users that have some. A user whose fetch
// fails keeps the keys that did resolve (literal ones always do) and,
// for a failing entry, the keys it gave last time (sshkeys' cache).
func (r *Runner) remoteKeys(ctx context.Context, c *config.Config) error {
	remote := RemoteKeys(c)
	names := make([]string, 0, len(remote))
	for n := range remote {
		names = append(names, n)
	}
	sort.Strings(names)
	res := *r.o.Keys
	res.AllowHTTP = c.Kestrel.AllowInsecureHTTP
	var errs []error
	for _, n := range names {
		keys, err := res.Resolve(ctx, remote[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
		if err := users.WriteAuthorizedKeys(r.o.Root, n, keys); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) syncTime(ctx context.Context, sys *stage2.System, servers []string) error {
	ctx, cancel := context.WithTimeout(ctx, ntpTimeout)
	defer cancel()
	c := ntp.Client{Clock: r.o.Clock}
	resp, err := c.Sync(ctx, servers)
	if err != nil {
		return err
	}
	sys.Logf("time set from %s (offset %v, stratum %d)", resp.Server, resp.Offset.Round(time.Millisecond), resp.Stratum)
	return nil
}
