// Package modload loads the kernel modules named in a module list file
// (layout.ModuleList: one name per line, '#' comments), in order, each
// with its dependencies from modules.dep, using u-root's kmodule (which
// calls finit_module and decompresses .ko.xz/.ko.gz/.ko.zst).
//
// A module that is already loaded or built into the kernel is not an
// error. A module that fails to load is reported and the rest are still
// loaded: one missing NIC driver must not stop a node from booting.
//
// Limits: no module parameters, no modprobe.d aliases or blacklists, no
// hardware probing by modalias (the list is explicit).
package modload

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
)

// ReadList returns the module names in the list file at path.
func ReadList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module list: %w", err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, n := range strings.Fields(line) {
			names = append(names, n)
		}
	}
	return names, sc.Err()
}

// Options say where the modules are.
type Options struct {
	Root    string // "/" on the device; the tree that holds lib/modules/<kver>
	KVer    string // kernel release; "" means uname -r
	SysRoot string // sysfs, to recognise built-in modules ("/sys")
	Logf    func(format string, args ...any)
}

// Load loads every module named in the list file at listPath (a path
// inside Root). It returns how many it loaded or found present, and
// the joined errors of those it could not load.
func Load(listPath string, o Options) (int, error) {
	names, err := ReadList(filepath.Join(o.Root, listPath))
	if err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, nil
	}
	p, err := kmodule.NewProber(kmodule.ProbeOpts{RootDir: o.Root, KVer: o.KVer})
	if err != nil {
		return 0, fmt.Errorf("modules.dep under %s: %w", o.Root, err)
	}
	var errs []error
	ok := 0
	for _, n := range names {
		if err := p.Probe(n, ""); err != nil {
			if builtin(o.SysRoot, n) {
				ok++
				continue
			}
			errs = append(errs, fmt.Errorf("module %s: %w", n, err))
			if o.Logf != nil {
				o.Logf("module %s: %v", n, err)
			}
			continue
		}
		ok++
	}
	return ok, errors.Join(errs...)
}

// builtin reports whether the kernel already has the module: built in, or
// loaded by someone else. /sys/module/<name> exists in both cases.
func builtin(sysRoot, name string) bool {
	if sysRoot == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(sysRoot, "module", strings.ReplaceAll(name, "-", "_")))
	return err == nil
}
