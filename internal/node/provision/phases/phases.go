// Package phases puts the merged config into effect on the node, each key
// in the boot phase config.Keys gives it, through the appliers' own input
// types (writefiles, users, sysctl, modprobe, timezone, netconf, ntp,
// sshkeys, runcmd):
//
//   - initramfs (Initramfs, a stage 1 hook, once the new root, the state
//     partition and the ESP are visible): kestrel.modules (with
//     parameters), kestrel.sysctl, init_cmd (run chrooted into the new
//     root).
//   - boot (Runner.Boot, a stage 2 Boot hook, before the network):
//     hostname; the default user kestrel and kestrel.users with their
//     literal keys and password hashes; write_files (after the users, so
//     owners resolve); kestrel.environment (/etc/environment, and Environ
//     for services); kestrel.timezone; kestrel.mounts; boot_cmd. Then
//     Runner.Network (stage 2's Network hook): static addresses, routes,
//     VLANs and bonds with netconf, resolv.conf for static DNS, and the
//     list of interfaces that get DHCP.
//   - network-up (Runner.NetworkUp): metadata services and config_url
//     (datasource.Network), merged again; the boot-phase keys they changed
//     are applied late; github:/gitlab:/URL keys are fetched and added;
//     the clock is set from kestrel.ntp_servers; run_cmd.
//
// boot_cmd and run_cmd start where their phase puts them but run in the
// background, one list after the other, each command under
// kestrel.command_timeout: the phases, and so sshd, the network, k3s and
// the console, never wait for them. A boot_cmd that the network must wait
// for does not exist any more; init_cmd (stage 1) still runs inline,
// bounded by the same deadline.
//
// Sources are read in config's documented order (config.LoadLocal, then
// the NoCloud disk with datasource.Local) in stage 1 and again in stage 2:
// the two are separate processes and nothing is handed over. A source with
// any problem is skipped whole (package config), so a bad file never
// half-applies; its problems, file:line:col first, go to the console and
// to `kestrel status` (stage2.System.Warn).
//
// Limits: a key is applied once per boot (a late change from a network
// source re-applies hostname, users and keys, write_files, environment,
// timezone, mounts, sysctl and modules; boot_cmd, init_cmd and
// kestrel.network changes wait for the next boot); nothing dropped from
// the config is undone before the next boot (/etc is regenerated then);
// kestrel.wifi is reported as not supported; registries, k3s settings and
// console_shell belong to the k3s and console hooks, which read Config.
// Services started in the boot phase (sshd) keep the environment and
// password setting they started with when a network source changes them.
// Static DNS servers stay in front of DHCP's in resolv.conf, also when
// stage 2 rewrites it at a lease renewal (stage2.System.SetStaticDNS).
// kestrel.mounts finds labels and UUIDs of ext2/3/4 and FAT filesystems
// only (ReadFSID); other filesystems need device:.
package phases

import (
	"bufio"
	"crypto/rand"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/access/sshkeys"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
	"github.com/kestrel-os/kestrel/internal/node/net/ntp"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
)

// Options are the Runner's dependencies; stage 2 passes the node's, tests
// temporary trees and local servers.
type Options struct {
	Root    string // "/" on the node; every path is under it
	ESP     string // where stage 2 mounts the ESP (layout.ESPMount)
	Cmdline string // kernel command line file ("/proc/cmdline")
	Cache   string // datasource cache (datasource.DefaultCache)

	Random      io.Reader                       // password salts; crypto/rand when nil
	Net         datasource.Env                  // metadata base URL, HTTP client
	Keys        *sshkeys.Resolver               // github:/gitlab:/URL keys
	Clock       ntp.Clock                       // the clock NTP steps
	Mount       mounts.MountFunc                // kestrel.mounts
	Sethostname func([]byte) error              // the kernel's host name
	Netlink     func() (*netlink.Handle, error) // a handle in the node's namespace (netconf.NewHandle)
}

// Runner applies the config in stage 2. Create it once (cmd/kestrel) and
// give its methods to stage 2 as hooks; other hooks read the merged
// config with Config.
type Runner struct {
	o Options

	mu     sync.Mutex
	src    *config.Sources
	merged *config.Config // as merged, plain passwords included
	cfg    *config.Config // passwords hashed: what was applied
	errs   []error        // problems of skipped sources
	local  []datasource.Raw
	// cmdsDone is closed when the last queued command list has ended.
	cmdsDone chan struct{}
}

// New returns a Runner.
func New(o Options) *Runner {
	if o.Random == nil {
		o.Random = rand.Reader
	}
	if o.Keys == nil {
		o.Keys = &sshkeys.Resolver{}
	}
	if o.Netlink == nil {
		o.Netlink = netconf.NewHandle
	}
	return &Runner{o: o}
}

// Config is the merged config, nil until the boot phase has merged it.
// After the network-up phase it includes the network sources. Plain
// passwords are already replaced by their hashes. Callers must not modify
// it.
func (r *Runner) Config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// Errors are the problems of the sources that were skipped, each
// starting with file:line:col.
func (r *Runner) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// Environ is the environment for services and commands: PATH and HOME,
// then kestrel.environment (proxies and the like), sorted by name.
func (r *Runner) Environ() []string {
	return Environ(r.Config())
}

func (r *Runner) path(p string) string { return filepath.Join(r.o.Root, p) }

// Appliers names, for every key of config.Keys that has a phase, what
// puts it into effect: a test keeps it complete, so that no key is
// silently ignored.
var Appliers = map[string]string{
	"init_cmd":                    "phases.Initramfs (runcmd, chrooted into the new root)",
	"kestrel.modules":             "phases.Initramfs (modprobe)",
	"kestrel.sysctl":              "phases.Initramfs (sysctl)",
	"hostname":                    "Runner.Boot",
	"ssh_authorized_keys":         "Runner.Boot (literal keys, users), Runner.NetworkUp (github:, gitlab:, URLs; sshkeys)",
	"kestrel.password":            "Runner.Boot (users)",
	"kestrel.users":               "Runner.Boot (users), Runner.NetworkUp (remote keys)",
	"write_files":                 "Runner.Boot (writefiles), after the users",
	"kestrel.environment":         "Runner.Boot (/etc/environment; Runner.Environ for services)",
	"kestrel.timezone":            "Runner.Boot (timezone)",
	"kestrel.mounts":              "Runner.Boot",
	"boot_cmd":                    "Runner.Boot (runcmd, in the background)",
	"kestrel.network":             "Runner.Network (netconf)",
	"kestrel.dns_nameservers":     "Runner.Network and Runner.NetworkUp (resolv.conf)",
	"kestrel.wifi":                "Runner.Boot: reported as not supported",
	"kestrel.console_shell":       "stage2 (Hooks.ConsoleLogin): false puts busybox login on the console instead of a root shell",
	"kestrel.kexec_reboot":        "stage2 (Hooks.Kexec, power.Shutdown.Kexec): a reboot starts the next slot's kernel (internal/node/init/kexec)",
	"kestrel.data_sources":        "Runner.NetworkUp (datasource.Network)",
	"kestrel.config_url":          "Runner.NetworkUp (datasource.Network)",
	"kestrel.allow_insecure_http": "Runner.NetworkUp (datasource.Network, sshkeys; warned)",
	"kestrel.ntp_servers":         "Runner.NetworkUp (ntp)",
	"run_cmd":                     "Runner.NetworkUp (runcmd, in the background after boot_cmd)",
	"kestrel.command_timeout":     "runcmd's deadline for init_cmd, boot_cmd and run_cmd (CommandTimeout)",
	"kestrel.registries":          "k3sservice (registries.yaml), from Runner.Config",
	"kestrel.server_url":          "k3sservice, from Runner.Config",
	"kestrel.token":               "k3sservice, from Runner.Config",
	"kestrel.labels":              "k3sservice, from Runner.Config",
	"kestrel.taints":              "k3sservice, from Runner.Config",
	"kestrel.k3s_args":            "k3sservice, from Runner.Config",
	"kestrel.k3s":                 "k3sservice, from Runner.Config",
	"kestrel.install":             "kestrel install only; never applied at boot",
}

// ErrorLines splits a source error (config.Errors holds one problem per
// line) into lines for the console and `kestrel status`.
func ErrorLines(err error) []string {
	var es config.Errors
	if errors.As(err, &es) {
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Error()
		}
		return out
	}
	return strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
}

// SourceSkipped reports whether a source error made its source be skipped
// whole, rather than only unknown keys being left out of it (see
// config.Error.UnknownKey).
func SourceSkipped(err error) bool {
	var es config.Errors
	if errors.As(err, &es) {
		return !es.OnlyUnknownKeys()
	}
	var e *config.Error
	return !errors.As(err, &e) || !e.UnknownKey
}

// skipNote says what became of the source of err, for the console.
func skipNote(err error) string {
	if SourceSkipped(err) {
		return "(source skipped)"
	}
	return "(left out; the rest of its source applies)"
}

// logWriter turns the whole lines runcmd writes into log calls.
type logWriter func(format string, args ...any)

func (l logWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		l("%s", sc.Text())
	}
	return len(p), nil
}

// step runs one applier and reports its error with the key it applies.
func step(key string, warn func(string, ...any), f func() error) {
	if err := f(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			warn("%s: %s", key, line)
		}
	}
}
