package phases

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf/netnstest"
)

// TestNetworkPhase checks the Network hook's answer to stage 2: every
// wired interface without a network section (netlink unused), exactly
// the picked ones with one, none when the config turns DHCP off, and the
// default again when netlink cannot be opened.
func TestNetworkPhase(t *testing.T) {
	noNetlink := func() (*netlink.Handle, error) { return nil, unix.EPROTONOSUPPORT }
	tests := []struct {
		name    string
		yaml    string
		netlink bool // a namespace with eth0; else opening netlink fails
		every   bool
		ifs     []string
		err     string
	}{
		{name: "no network section", yaml: "kestrel:\n  dns_nameservers: [192.0.2.53]\n", every: true},
		{name: "dhcp off everywhere", yaml: "kestrel:\n  network:\n    interfaces:\n      eth0: {dhcp: false}\n", netlink: true},
		{name: "listed without address", yaml: "kestrel:\n  network:\n    interfaces:\n      eth0: {mtu: 1400}\n", netlink: true, ifs: []string{"eth0"}},
		{name: "netlink fails", yaml: "kestrel:\n  network:\n    interfaces:\n      eth0: {dhcp: false}\n", every: true, err: "netlink: protocol not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeRoot(t)
			if err := os.WriteFile(filepath.Join(root, "state", config.StateConfigFile), []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			open := noNetlink
			if tt.netlink {
				open = netnsWithEth0(t)
			}
			r := New(Options{Root: root, ESP: filepath.Join(root, "boot/efi"), Cmdline: filepath.Join(root, "proc/cmdline"), Netlink: open})
			var log logBuf
			sys := &stage2.System{Logf: log.logf}
			if err := r.Boot(context.Background(), sys); err != nil {
				t.Fatal(err)
			}
			got, err := r.Network(context.Background(), sys)
			if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
			if ns := sys.StaticDNS(); strings.Contains(tt.yaml, "dns_nameservers") != (len(ns) == 1 && ns[0] == "192.0.2.53") {
				t.Errorf("static DNS for stage 2's rewrites: %v", ns)
			}
			if got.EveryWired() != tt.every || !slices.Equal(got.Interfaces(), tt.ifs) {
				t.Errorf("DHCP on %v, want every wired %v, %v\n%s", got, tt.every, tt.ifs, log.String())
			}
		})
	}
}

// netnsWithEth0 returns a netlink opener into a fresh network namespace
// that holds eth0 (one end of a veth pair), so the host is never touched.
func netnsWithEth0(t *testing.T) func() (*netlink.Handle, error) {
	t.Helper()
	ns := netnstest.New(t)
	h, err := netlink.NewHandleAt(ns, netconf.Families...)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	return func() (*netlink.Handle, error) { return netlink.NewHandleAt(ns, netconf.Families...) }
}
