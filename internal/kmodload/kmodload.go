// Package kmodload loads the kernel modules the config lists (k3OS
// `modules:`), each entry a module name optionally followed by parameters:
// "nf_conntrack hashsize=65536". Dependencies come from modules.dep under
// the root's /lib/modules/<release> (u-root's pkg/kmodule does the
// resolving and the finit_module/init_module calls, .ko, .ko.xz, .ko.gz and
// .ko.zst alike).
//
// Limits: no modprobe.d options or aliases (name a module by its file
// name, dashes and underscores alike); built-in modules (modules.builtin)
// and modules already loaded count as success; parameters reach only the
// named module, not its dependencies.
//
// It does not go through internal/node/boot/coldplug (the image's module list, coldplug):
// the two share only u-root's kmodule.Prober, which each calls directly,
// and a module the user named that fails with ENODEV is an error here,
// where modload counts it as hardware that is absent.
package kmodload

import (
	"errors"
	"fmt"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
)

// Module is one parsed entry.
type Module struct {
	Name   string
	Params string // space-separated key=value, as insmod takes them
}

// Parse splits "name key=value ..." and checks its shape.
func Parse(entry string) (Module, error) {
	fields := strings.Fields(entry)
	if len(fields) == 0 {
		return Module{}, errors.New("empty module entry")
	}
	name := fields[0]
	if strings.ContainsAny(name, "/=") {
		return Module{}, fmt.Errorf("module %q: name must not contain '/' or '='", name)
	}
	for _, p := range fields[1:] {
		if k, _, _ := strings.Cut(p, "="); k == "" {
			return Module{}, fmt.Errorf("module %s: parameter %q: want key=value", name, p)
		}
	}
	return Module{Name: name, Params: strings.Join(fields[1:], " ")}, nil
}

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
	var mods []Module
	var errs []error
	for i, e := range entries {
		m, err := Parse(e)
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
