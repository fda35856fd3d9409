package modprobe

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeModules builds a /lib/modules/<release> tree with modules.dep.
func fakeModules(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "lib/modules/6.1.0-test")
	files := []string{
		"kernel/net/bridge/br_netfilter.ko.xz",
		"kernel/net/bridge/bridge.ko.xz",
		"kernel/net/802/stp.ko.xz",
		"kernel/net/llc/llc.ko.xz",
		"kernel/net/netfilter/nf_conntrack.ko",
	}
	for _, f := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(
		"kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n"+
			"kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n"+
			"kernel/net/802/stp.ko.xz: kernel/net/llc/llc.ko.xz\n"+
			"kernel/net/llc/llc.ko.xz:\n"+
			"kernel/net/netfilter/nf_conntrack.ko:\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/overlayfs/overlay.ko\n"), 0o644)
	return root
}

func TestLoadDryRun(t *testing.T) {
	root := fakeModules(t)
	var loaded []string
	opts := Options{Root: root, Release: "6.1.0-test", DryRun: func(p string) {
		loaded = append(loaded, filepath.Base(p))
	}}
	if err := Load(opts, []string{"br-netfilter", "nf_conntrack hashsize=1024", "overlay"}); err != nil {
		t.Fatal(err)
	}
	pos := func(name string) int { return slices.Index(loaded, name) }
	for _, m := range []string{"llc.ko.xz", "stp.ko.xz", "bridge.ko.xz", "br_netfilter.ko.xz", "nf_conntrack.ko"} {
		if pos(m) < 0 {
			t.Errorf("%s not loaded: %v", m, loaded)
		}
	}
	if !(pos("llc.ko.xz") < pos("stp.ko.xz") && pos("stp.ko.xz") < pos("bridge.ko.xz") && pos("bridge.ko.xz") < pos("br_netfilter.ko.xz")) {
		t.Errorf("dependencies not loaded first: %v", loaded)
	}
	if slices.Contains(loaded, "overlay.ko") {
		t.Errorf("built-in module loaded: %v", loaded)
	}
}

func TestLoadErrors(t *testing.T) {
	root := fakeModules(t)
	opts := Options{Root: root, Release: "6.1.0-test", DryRun: func(string) {}}
	err := Load(opts, []string{"nf_conntrack", "no_such_module"})
	if err == nil || !strings.Contains(err.Error(), "load no_such_module") {
		t.Errorf("error %v", err)
	}
	err = Load(Options{Root: root, Release: "9.9.9"}, []string{"llc"})
	if err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("missing tree: %v", err)
	}
	loaded := 0
	err = Load(Options{Root: root, Release: "6.1.0-test", DryRun: func(string) { loaded++ }}, []string{"llc", "bad =x"})
	if err == nil || !strings.Contains(err.Error(), "modules[1]") || loaded != 0 {
		t.Errorf("malformed entry: %v, %d loaded", err, loaded)
	}
}
