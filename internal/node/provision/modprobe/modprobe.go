// Package modprobe loads the kernel modules the config names (k3OS
// `modules:`), each a module name optionally followed by parameters
// ("nf_conntrack hashsize=65536", grammar in config.ParseModule), with
// their dependencies from modules.dep under the root's
// /lib/modules/<release>. u-root's pkg/kmodule does the resolving and the
// finit_module/init_module calls, .ko, .ko.xz, .ko.gz and .ko.zst alike.
//
// Limits: no modprobe.d options or aliases (name a module by its file
// name, dashes and underscores alike); built-in modules (modules.builtin)
// and modules already loaded count as success; parameters reach only the
// named module, not its dependencies.
//
// It does not go through internal/node/boot/coldplug (the image's module
// list): the two share only u-root's kmodule.Prober, which each calls
// directly, and a module the user named that fails with ENODEV is an
// error here, where coldplug counts it as hardware that is absent.
package modprobe

import (
	"errors"
	"fmt"

	"github.com/u-root/u-root/pkg/kmodule"

	"github.com/kestrel-os/kestrel/internal/config"
)

// Options say where modules are found. Zero values mean the running
// kernel's release under "/".
type Options struct {
	Root    string // "/" on the node
	Release string // uname -r when empty
	// DryRun, when set, receives the path of each module file instead of
	// loading it (dependencies first).
	DryRun func(path string)
}

// Load parses every entry first (nothing is loaded if one is malformed),
// then loads each with its dependencies, going on after a failure and
// returning one error per failing entry, joined.
func Load(opts Options, entries []string) error {
	var mods []config.Module
	var errs []error
	for i, e := range entries {
		m, err := config.ParseModule(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("modules[%d]: %w", i, err))
			continue
		}
		mods = append(mods, m)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(mods) == 0 {
		return nil
	}
	p, err := kmodule.NewProber(kmodule.ProbeOpts{
		RootDir:        opts.Root,
		KVer:           opts.Release,
		DryRunCB:       opts.DryRun,
		IgnoreProcMods: opts.DryRun != nil,
	})
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	for _, m := range mods {
		if err := p.Probe(m.Name, m.Params); err != nil {
			errs = append(errs, fmt.Errorf("modules: load %s %s: %w", m.Name, m.Params, err))
		}
	}
	return errors.Join(errs...)
}
