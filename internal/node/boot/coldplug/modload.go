// Package coldplug loads the kernel modules named in a module list file
// (layout.ModuleList: one name per line, '#' comments), in order, each
// with its dependencies from modules.dep, using u-root's kmodule (which
// calls finit_module and decompresses .ko.xz/.ko.gz/.ko.zst).
//
// Load loads the whole list. A Loader (coldplug.go) splits it: first the
// drivers whose modalias patterns match devices present (following kernel
// uevents as drivers make new devices appear, loading concurrently), the
// rest later, so boot waits only for what the hardware needs.
//
// A module that is already loaded or built into the kernel, or whose
// init says its hardware is absent (ENODEV), is not an error. A module
// that fails to load is reported and the rest are still loaded: one
// missing NIC driver must not stop a node from booting.
//
// Limits: no module parameters (internal/node/provision/modprobe loads the
// config's modules: entries, with theirs), no modprobe.d options,
// blacklists or softdeps; the list is the policy, and modalias matching
// only orders it.
//
// It does not load the config's entries itself: taking parameters,
// failing on ENODEV and dry-running by file path would widen the Loader
// for what modprobe needs, a parser in front of the same kmodule.Prober.
package coldplug

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	DryRun  func(name, params string) // tests: record instead of loading
}

// Load loads every module named in the list file at listPath (a path
// inside Root), in order. It returns how many it loaded or found present,
// and the joined errors of those it could not load.
func Load(listPath string, o Options) (int, error) {
	l, err := Open(listPath, o)
	if err != nil {
		return 0, err
	}
	return l.LoadRest()
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
