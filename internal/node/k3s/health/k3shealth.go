// Package health waits until the local k3s is healthy: for a server, the
// API server's https://127.0.0.1:6443/readyz answers 200; for an agent, the
// kubelet's http://127.0.0.1:10248/healthz answers 200. Stage 2 calls Wait
// after starting k3s and declares the boot good only when it returns nil.
//
// TLS for the server: k3s's API certificate is signed by its own CA, which
// k3s writes to /var/lib/rancher/k3s/server/tls/server-ca.crt. When that
// file exists the certificate is verified against it; before it exists
// (first boot, k3s still starting) verification is skipped, since the
// address is loopback. k3s runs the API server with anonymous auth off, so
// /readyz needs a client certificate: the admin client certificate k3s
// writes next to the CA (client-admin.crt/.key) is presented when present.
// A 401 or 403 is reported as such, so a missing certificate is not
// mistaken for a slow start.
//
// Who answers: ports 6443 and 10248 are above 1024, so any local user can
// bind one before k3s does and answer 200, which would declare a boot good
// (and mark an upgraded slot good) without k3s. So every connection is
// checked before a byte is sent: the socket that accepted it, found in
// /proc/net/tcp{,6} by the connection's two addresses, must belong to root
// (k3s runs as root; a user cannot create a root-owned socket, and root
// needs no trick to lie about health). This is chosen over trusting only
// k3s's CA because the agent's kubelet endpoint is plain HTTP without any
// certificate, and the server's CA does not exist yet on a first boot.
// It does not check that the root process is k3s itself (that would mean
// walking every process's file descriptors); Options.OwnerUID changes the
// required owner (tests run as another user).
//
// Limits: it checks the local node only (an agent's registration with the
// server shows up as the kubelet becoming healthy, not as a Node object
// being Ready); it does not follow redirects; a probe that answers 200 once
// is enough (no "n consecutive successes").
package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// Default health endpoints of a real k3s.
const (
	ServerURL = "https://127.0.0.1:6443/readyz"
	AgentURL  = "http://127.0.0.1:10248/healthz"
)

// TLS files k3s writes on a server, relative to the root.
const (
	ServerTLSDir  = "/var/lib/rancher/k3s/server/tls"
	ServerCA      = ServerTLSDir + "/server-ca.crt"
	AdminCertFile = ServerTLSDir + "/client-admin.crt"
	AdminKeyFile  = ServerTLSDir + "/client-admin.key"
)

// Defaults for Options.
const (
	DefaultTimeout  = 5 * time.Minute
	DefaultInterval = 2 * time.Second
)

// ErrNotHealthy is wrapped by Wait's error when the timeout ran out.
var ErrNotHealthy = errors.New("k3s not healthy")

// Options for Wait and Probe. Zero values take the defaults.
type Options struct {
	Role     string // "server" or "agent"
	URL      string // default ServerURL or AgentURL by role
	Timeout  time.Duration
	Interval time.Duration
	// Root prefixes the k3s TLS files (ServerCA, AdminCertFile,
	// AdminKeyFile); default "/".
	Root string
	// Logf, when set, gets one line per change of probe outcome.
	Logf func(format string, args ...any)
	// Proc is procfs's mount point, where the answering socket's owner is
	// looked up; default "/proc".
	Proc string
	// OwnerUID is the uid that must own the answering socket: 0, root,
	// as k3s runs.
	OwnerUID uint32
}

// Wait probes until the endpoint answers 200, the timeout runs out
// (error wrapping ErrNotHealthy with the last answer), or ctx ends.
func Wait(ctx context.Context, opt Options) error {
	url, err := opt.url()
	if err != nil {
		return err
	}
	timeout, interval := opt.Timeout, opt.Interval
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		ok, detail := probe(ctx, opt, url, interval)
		if ok {
			if opt.Logf != nil {
				opt.Logf("k3s %s healthy after %v (%s)", opt.Role, time.Since(start).Round(time.Millisecond), url)
			}
			return nil
		}
		if detail != last && opt.Logf != nil && ctx.Err() == nil {
			opt.Logf("k3s %s not healthy yet: %s", opt.Role, detail)
		}
		if ctx.Err() == nil {
			last = detail
		}
		select {
		case <-ctx.Done():
			// Our own timeout, not the caller's context ending. (Not
			// time.Since(start) >= timeout: the deadline was set a moment
			// before start, so it can fire a moment "early".)
			if parent.Err() == nil {
				return fmt.Errorf("%w: %s gave no 200 within %v; last answer: %s", ErrNotHealthy, url, timeout, last)
			}
			return fmt.Errorf("waiting for k3s %s health at %s: %w (last answer: %s)", opt.Role, url, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Probe asks once; detail says what was answered ("200 ok", "HTTP 503:
// ...", a connection error).
func Probe(ctx context.Context, opt Options) (ok bool, detail string) {
	url, err := opt.url()
	if err != nil {
		return false, err.Error()
	}
	return probe(ctx, opt, url, 5*time.Second)
}

func (o Options) url() (string, error) {
	if o.URL != "" {
		return o.URL, nil
	}
	switch o.Role {
	case "server":
		return ServerURL, nil
	case "agent":
		return AgentURL, nil
	}
	return "", fmt.Errorf("k3s health: role %q is neither server nor agent", o.Role)
}

func probe(ctx context.Context, opt Options, url string, limit time.Duration) (bool, string) {
	if limit > 10*time.Second {
		limit = 10 * time.Second
	}
	if limit < time.Second {
		limit = time.Second
	}
	transport := &http.Transport{DialContext: opt.dialOwned, DisableKeepAlives: true}
	client := &http.Client{
		Timeout:   limit,
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	if strings.HasPrefix(url, "https://") {
		cfg, err := tlsConfig(opt.Root)
		if err != nil {
			return false, err.Error()
		}
		transport.TLSClientConfig = cfg
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	text := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusOK:
		return true, "200 " + text
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, fmt.Sprintf("HTTP %d (client certificate %s missing or not accepted): %s", resp.StatusCode, AdminCertFile, text)
	}
	return false, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, text)
}

// tlsConfig trusts k3s's server CA when it exists (otherwise skips
// verification: the address is loopback) and presents the admin client
// certificate when it exists.
func tlsConfig(root string) (*tls.Config, error) {
	if root == "" {
		root = "/"
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	ca, err := os.ReadFile(filepath.Join(root, ServerCA))
	switch {
	case err == nil:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("k3s health: %s holds no PEM certificate", ServerCA)
		}
		cfg.RootCAs = pool
	case os.IsNotExist(err):
		cfg.InsecureSkipVerify = true
	default:
		return nil, fmt.Errorf("k3s health: %w", err)
	}
	certFile, keyFile := filepath.Join(root, AdminCertFile), filepath.Join(root, AdminKeyFile)
	if _, err := os.Stat(certFile); err == nil {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("k3s health: admin client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// dialOwned connects and keeps the connection only when the socket that
// accepted it belongs to OwnerUID.
func (o Options) dialOwned(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	uid, err := acceptorUID(o.proc(), c.RemoteAddr(), c.LocalAddr())
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("k3s health: who answers %s: %w", addr, err)
	}
	if uid != o.OwnerUID {
		c.Close()
		return nil, fmt.Errorf("k3s health: %s is answered by a socket of uid %d, not %d: another program holds k3s's port", addr, uid, o.OwnerUID)
	}
	return c, nil
}

func (o Options) proc() string {
	if o.Proc == "" {
		return "/proc"
	}
	return o.Proc
}

// acceptorUID returns the owner of the TCP socket whose local address is
// server and remote address client: the server side of one connection.
// The accepted socket may show up a moment after connect returns, so a
// miss is retried briefly.
func acceptorUID(proc string, server, client net.Addr) (uint32, error) {
	s, ok1 := server.(*net.TCPAddr)
	c, ok2 := client.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("not a TCP connection (%s)", server.Network())
	}
	fs, err := procfs.NewFS(proc)
	if err != nil {
		return 0, err
	}
	for try := 0; try < 5; try++ {
		for _, table := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
			lines, err := table()
			if errors.Is(err, os.ErrNotExist) {
				continue // no IPv6 in this kernel
			}
			if err != nil {
				return 0, err
			}
			for _, l := range lines {
				if l.LocalPort == uint64(s.Port) && l.RemPort == uint64(c.Port) && l.LocalAddr.Equal(s.IP) && l.RemAddr.Equal(c.IP) {
					return uint32(l.UID), nil
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("no socket %s <- %s in %s/net/tcp: the answer does not come from this host", server, client, proc)
}
