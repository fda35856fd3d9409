package stage2

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/node/net/netup"
)

// TestRenewKeepsStaticDNS renews a lease whose DNS servers changed: the
// rewritten resolv.conf still lists the config's servers first, then the
// leases' ones, each once.
func TestRenewKeepsStaticDNS(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	sys := &System{root: root, Logf: t.Logf}
	sys.SetStaticDNS([]string{"192.0.2.53", "10.0.2.3"})
	lease := func(iface string, dns ...string) netup.Lease {
		l := netup.Lease{Iface: iface, Domain: "lan"}
		for _, d := range dns {
			l.DNS = append(l.DNS, net.ParseIP(d))
		}
		return l
	}
	sys.leases = []netup.Lease{lease("eth0", "10.0.2.3"), lease("eth1", "1.1.1.1")}
	sys.renewed(lease("eth0", "10.0.2.3", "9.9.9.9"))

	got, err := os.ReadFile(filepath.Join(root, "etc/resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	want := "nameserver 192.0.2.53\nnameserver 10.0.2.3\nnameserver 9.9.9.9\nnameserver 1.1.1.1\nsearch lan\n"
	if !strings.HasSuffix(string(got), want) {
		t.Errorf("resolv.conf:\n%s\nwant it to end with\n%s", got, want)
	}
}
