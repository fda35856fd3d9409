package phases

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/access/users"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
	"github.com/kestrel-os/kestrel/internal/node/net/netup"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
	"github.com/kestrel-os/kestrel/internal/node/provision/lastgood"
	"github.com/kestrel-os/kestrel/internal/node/provision/modprobe"
	"github.com/kestrel-os/kestrel/internal/node/provision/runcmd"
	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
	"github.com/kestrel-os/kestrel/internal/osfiles/hostname"
	"github.com/kestrel-os/kestrel/internal/osfiles/timezone"
	"github.com/kestrel-os/kestrel/internal/osfiles/writefiles"
	"github.com/kestrel-os/kestrel/internal/sysctl"
)

// EnvironmentPath is where kestrel.environment is written.
const EnvironmentPath = "/etc/environment"

// Boot is the boot phase (a stage 2 Boot hook): it reads the local
// sources (an editable file that an edit broke is replaced by its last
// good version, package lastgood), reports the skipped ones, and applies
// the boot-phase keys in order: hostname, users and keys, write_files,
// environment, timezone, mounts, boot_cmd. Each key's failure is
// reported and the others still apply.
func (r *Runner) Boot(ctx context.Context, sys *stage2.System) error {
	store := lastgood.Store{Dir: r.path(filepath.Join(layout.StateMount, lastgood.Dir))}
	loaded := store.Load(config.DefaultLocations(r.o.Root, r.o.ESP, r.o.Cmdline))
	src := loaded.Sources
	local := datasource.Local(ctx, src, &datasource.NoCloud{
		Devices: datasource.NoCloudCandidates(r.path("/sys/class/block"), r.path("/dev")),
	})
	res, err := src.Merge()
	if err != nil {
		return fmt.Errorf("merge config: %w", err)
	}
	skipped := 0
	for _, e := range res.Errors {
		if SourceSkipped(e) {
			skipped++
		}
		for _, line := range ErrorLines(e) {
			sys.Warn("config: %s %s", line, skipNote(e))
		}
	}
	for _, f := range loaded.Replaced {
		sys.Warn("config: %s is invalid: its last good version is used instead", f)
	}
	if err := store.Save(loaded); err != nil {
		sys.Warn("config: %v", err)
	}
	applied := cloneConfig(res.Config)
	if err := applied.HashPasswords(r.o.Random); err != nil {
		sys.Warn("config: %v", err)
	}
	r.mu.Lock()
	r.src, r.merged, r.cfg, r.errs, r.local = src, res.Config, applied, res.Errors, local
	r.mu.Unlock()
	sys.Logf("config: %d sources merged, %d skipped", len(res.Sources), skipped)

	r.applyBoot(ctx, sys, applied, nil)
	if len(applied.BootCmd) > 0 {
		r.background(ctx, sys, "boot_cmd", applied)
	}
	return nil
}

// lateKeys are the keys applyBoot can apply again when a network source
// changed them.
var lateKeys = map[string]bool{
	"hostname": true, "ssh_authorized_keys": true, "kestrel.password": true, "kestrel.users": true,
	"write_files": true, "kestrel.environment": true, "kestrel.timezone": true, "kestrel.mounts": true,
	"kestrel.sysctl": true, "kestrel.modules": true,
}

// applyBoot applies the boot-phase keys of c; only, when not nil, limits
// it to the keys named there (those a network source changed).
func (r *Runner) applyBoot(ctx context.Context, sys *stage2.System, c *config.Config, only map[string]bool) {
	want := func(keys ...string) bool {
		if only == nil {
			return true
		}
		for _, k := range keys {
			if only[k] {
				return true
			}
		}
		return false
	}
	if c.Hostname != "" && want("hostname") {
		step("hostname", sys.Warn, func() error { return r.setHostname(sys, c.Hostname) })
	}
	if want("ssh_authorized_keys", "kestrel.password", "kestrel.users") {
		// Remote keys as last fetched (sshkeys cache on state): a boot
		// without network, or a source that is down, keeps access.
		cached := map[string][]string{}
		for name, entries := range RemoteKeys(c) {
			cached[name] = r.o.Keys.Cached(entries)
		}
		step("users", sys.Warn, func() error { return users.Apply(r.o.Root, Users(c, cached), r.o.Random) })
	}
	if len(c.WriteFiles) > 0 && want("write_files") {
		step("write_files", sys.Warn, func() error { return writefiles.Write(r.o.Root, Files(c)) })
	}
	if want("kestrel.environment") {
		step("kestrel.environment", sys.Warn, func() error { return r.writeEnvironment(c) })
	}
	if c.Kestrel.Timezone != "" && want("kestrel.timezone") {
		step("kestrel.timezone", sys.Warn, func() error { return timezone.Set(r.o.Root, c.Kestrel.Timezone) })
	}
	if len(c.Kestrel.Mounts) > 0 && want("kestrel.mounts") {
		step("kestrel.mounts", sys.Warn, func() error { return r.mountAll(c.Kestrel.Mounts) })
	}
	if len(c.Kestrel.Wifi) > 0 && want("kestrel.wifi") {
		sys.Warn("kestrel.wifi: Wi-Fi is not supported yet; the networks are ignored")
	}
	if only != nil { // initramfs keys changed late: apply them now too
		if len(c.Kestrel.Modules) > 0 && want("kestrel.modules") {
			step("kestrel.modules", sys.Warn, func() error { return modprobe.Load(modprobe.Options{Root: r.o.Root}, c.Kestrel.Modules) })
		}
		if len(c.Kestrel.Sysctl) > 0 && want("kestrel.sysctl") {
			step("kestrel.sysctl", sys.Warn, func() error { return sysctl.Apply(r.path("/proc/sys"), c.Kestrel.Sysctl) })
		}
	}
}

func (r *Runner) setHostname(sys *stage2.System, name string) error {
	if !hostname.Valid(name) {
		return fmt.Errorf("%q is not a valid host name", name)
	}
	if r.o.Sethostname != nil {
		if err := r.o.Sethostname([]byte(name)); err != nil {
			return fmt.Errorf("sethostname %s: %w", name, err)
		}
	}
	if err := hostname.WriteEtc(r.path("/etc"), name); err != nil {
		return err
	}
	sys.Hostname = name
	return nil
}

func (r *Runner) writeEnvironment(c *config.Config) error {
	data, err := EnvironmentFile(c.Kestrel.Environment)
	if werr := atomicfile.Write(r.path(EnvironmentPath), data, 0o644, atomicfile.NoChown, atomicfile.NoChown); werr != nil {
		return errors.Join(err, fmt.Errorf("write %s: %w", EnvironmentPath, werr))
	}
	return err
}

// commands is the runner for boot_cmd and run_cmd: the config's
// environment and command deadline, output on the console, the PID 1
// reaper.
func (r *Runner) commands(sys *stage2.System, c *config.Config) runcmd.Runner {
	return runcmd.Runner{Env: Environ(c), Log: logWriter(sys.Logf), Reaper: sys.Reaper, Timeout: CommandTimeout(c)}
}

// CommandTimeout is kestrel.command_timeout, or 0 (runcmd's default)
// when unset; the config's checks refused a malformed one already.
func CommandTimeout(c *config.Config) time.Duration {
	d, err := time.ParseDuration(c.Kestrel.CommandTimeout)
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

// background runs key's list (boot_cmd, run_cmd) of c in a goroutine,
// after every list queued before it: the phases return at once, so that
// sshd, the network, k3s, the console and the node's readiness never
// wait for a config command (a `ping` before the network, a `sleep`).
// Each command still has its deadline, and its failure is a warning.
// WaitCommands waits for the queue.
func (r *Runner) background(ctx context.Context, sys *stage2.System, key string, c *config.Config) {
	cmds := c.BootCmd
	if key == "run_cmd" {
		cmds = c.RunCmd
	}
	run := r.commands(sys, c)
	r.mu.Lock()
	prev := r.cmdsDone
	done := make(chan struct{})
	r.cmdsDone = done
	r.mu.Unlock()
	go func() {
		defer close(done)
		defer func() { // a bug here must not take PID 1 down
			if p := recover(); p != nil {
				sys.Warn("%s: panic: %v", key, p)
			}
		}()
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
				return
			}
		}
		step(key, sys.Warn, func() error { return run.Run(ctx, key, cmds) })
	}()
}

// WaitCommands waits until the command lists queued so far have ended,
// or ctx ends.
func (r *Runner) WaitCommands(ctx context.Context) error {
	r.mu.Lock()
	done := r.cmdsDone
	r.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Network is stage 2's Network hook: it writes resolv.conf when static DNS
// servers are configured, creates the configured bonds and VLANs, sets
// static addresses and routes, and says which interfaces get DHCP: every
// wired one when kestrel.network lists no interface (netlink is not even
// opened then), else those netconf.DHCPInterfaces picks, none when the
// config turns DHCP off everywhere.
func (r *Runner) Network(ctx context.Context, sys *stage2.System) (stage2.DHCPSet, error) {
	c := r.Config()
	if c == nil {
		c = &config.Config{}
	}
	var errs []error
	ns := Nameservers(c)
	sys.SetStaticDNS(ns) // stage 2 keeps them first when DHCP rewrites resolv.conf
	if len(ns) > 0 {
		if err := netconf.WriteResolvConf(r.path("/etc/resolv.conf"), ns, nil); err != nil {
			errs = append(errs, err)
		}
	}
	nc := NetConfig(c.Kestrel.Network)
	if len(nc.Interfaces) == 0 { // bonds and VLANs are listed interfaces too
		return stage2.DHCPEveryWired(), errors.Join(errs...)
	}
	// bonding and 8021q load after the node is ready otherwise.
	if mods := netconf.Modules(nc); len(mods) > 0 {
		if err := modprobe.Load(modprobe.Options{Root: r.o.Root}, mods); err != nil {
			errs = append(errs, err)
		}
	}
	h, err := r.o.Netlink()
	if err != nil {
		return stage2.DHCPEveryWired(), errors.Join(append(errs, fmt.Errorf("netlink: %w", err))...)
	}
	defer h.Close()
	if err := netconf.Apply(h, nc); err != nil {
		errs = append(errs, err)
	}
	links, err := h.LinkList()
	if err != nil {
		return stage2.DHCPEveryWired(), errors.Join(append(errs, fmt.Errorf("list links: %w", err))...)
	}
	wired, _ := netup.WiredInterfaces(r.path("/sys/class/net"))
	dhcp := stage2.DHCPOn(netconf.DHCPInterfaces(nc, links, wired))
	sys.Logf("network: static config for %d interfaces; DHCP on %s", len(nc.Interfaces), dhcp)
	return dhcp, errors.Join(errs...)
}

// cloneConfig copies c deeply enough for HashPasswords (the password
// fields) to leave c as it is.
func cloneConfig(c *config.Config) *config.Config {
	cp := *c
	cp.Kestrel.Users = append([]config.User(nil), c.Kestrel.Users...)
	return &cp
}
