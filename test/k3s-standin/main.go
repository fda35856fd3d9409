// Command k3s-standin is a STAND-IN FOR k3s, USED ONLY BY TESTS. It is not
// k3s and runs no Kubernetes. The test image builder installs it at
// /usr/bin/k3s in a TEST image so the boot tests can check how stage 2 and
// the supervisor start k3s without downloading the real binary. The release
// builder must never put it into an image (its output and its record say
// "k3s stand-in" so a mistake is visible at once).
//
// Started as `k3s server ...` or `k3s agent ...`, it:
//
//   - records its argv, environment and copies of
//     /etc/rancher/k3s/config.yaml and registries.yaml (null when absent)
//     in /var/lib/rancher/k3s-standin/record.json, and appends a line per
//     start and stop to /var/lib/rancher/k3s-standin/events.log, so tests
//     can count restarts;
//   - checks the node environment a real k3s needs (test/k3sprereq) and
//     reports each check, PASS or FAIL, on stdout and in the record;
//   - answers health where the real thing does: a server on HTTPS :6443
//     /readyz (self-signed certificate, also written to
//     /var/lib/rancher/k3s/server/tls/server-ca.crt like k3s's CA), an agent
//     on HTTP 127.0.0.1:10248 /healthz (the kubelet's port);
//   - exits 0 on SIGTERM or SIGINT.
//
// Behaviour switches, from K3S_STANDIN_MODE or else the first line of
// /var/lib/rancher/k3s-standin/mode:
//
//	ok                 healthy at once (default)
//	healthy-after=N    unhealthy (503) for N seconds, then healthy
//	unhealthy          answers health with 503, forever
//	crash-after=N      healthy, then exits 1 after N seconds ("crash" = 0)
//	hang               answers nothing, ignores SIGTERM/SIGINT (needs KILL)
//
// K3S_STANDIN_REQUIRE_CHECKS=1 makes it unhealthy while any check fails.
// K3S_STANDIN_LOG_EVERY=N prints a line every N seconds, as a real k3s
// logs all the time (a full-disk test needs a service that keeps writing).
// For host tests, K3S_STANDIN_ROOT, K3S_STANDIN_PROC and K3S_STANDIN_SYS
// move the trees it reads and writes, and K3S_STANDIN_SERVER_ADDR and
// K3S_STANDIN_AGENT_ADDR the health listeners (":0" picks a free port; the
// bound address is in the record as health_url).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/test/k3sprereq"
)

// Name is how the stand-in introduces itself everywhere.
// It carries k3sfetch.StandinMarker, by which the image builder refuses
// the stand-in for a release image.
const Name = "k3s-standin (" + fetch.StandinMarker + ")"

// Paths, relative to the root.
const (
	StateDir       = "/var/lib/rancher/k3s-standin"
	RecordFile     = StateDir + "/record.json"
	EventsFile     = StateDir + "/events.log"
	ModeFile       = StateDir + "/mode"
	ServerCAFile   = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
	ConfigFile     = "/etc/rancher/k3s/config.yaml"
	RegistriesFile = "/etc/rancher/k3s/registries.yaml"
)

// Record is what record.json holds.
type Record struct {
	Standin      string             `json:"standin"`
	PID          int                `json:"pid"`
	Started      time.Time          `json:"started"`
	StartCount   int                `json:"start_count"`
	Argv         []string           `json:"argv"`
	Role         string             `json:"role"`
	Env          []string           `json:"env"`
	Mode         string             `json:"mode"`
	Files        map[string]*string `json:"files"`
	Checks       []k3sprereq.Result `json:"checks"`
	ChecksPassed bool               `json:"checks_passed"`
	HealthURL    string             `json:"health_url"`
}

// errCrash is the exit the crash-after mode asks for.
var errCrash = errors.New("crashing as told")

func main() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	mode := readMode(os.Getenv, filepath.Join(rootDir(os.Getenv), ModeFile))
	sigs := make(chan os.Signal, 1)
	if mode.kind == "hang" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			s := <-sigs
			fmt.Printf("%s: received %v, stopping\n", Name, s)
			stop()
		}()
	}
	err := run(ctx, os.Args, os.Environ(), os.Getenv, os.Stdout)
	switch {
	case errors.Is(err, errCrash):
		fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
		os.Exit(1)
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
		os.Exit(2)
	}
}

type mode struct {
	kind  string // ok, healthy-after, unhealthy, crash-after, hang
	after time.Duration
	raw   string
}

func readMode(getenv func(string) string, file string) mode {
	raw := getenv("K3S_STANDIN_MODE")
	if raw == "" {
		if data, err := os.ReadFile(file); err == nil {
			raw, _, _ = strings.Cut(string(data), "\n")
		}
	}
	raw = strings.TrimSpace(raw)
	m, err := parseMode(raw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v; using ok\n", Name, err)
		return mode{kind: "ok", raw: raw}
	}
	return m
}

func parseMode(raw string) (mode, error) {
	kind, arg, hasArg := strings.Cut(raw, "=")
	m := mode{kind: kind, raw: raw}
	switch kind {
	case "", "ok":
		m.kind = "ok"
	case "unhealthy", "hang":
	case "crash":
		m.kind = "crash-after"
	case "crash-after", "healthy-after":
		if !hasArg {
			return m, fmt.Errorf("mode %q needs =seconds", raw)
		}
		n, err := strconv.ParseFloat(arg, 64)
		if err != nil || n < 0 {
			return m, fmt.Errorf("mode %q: bad seconds %q", raw, arg)
		}
		m.after = time.Duration(n * float64(time.Second))
	default:
		return m, fmt.Errorf("unknown mode %q (ok, healthy-after=N, unhealthy, crash-after=N, hang)", raw)
	}
	return m, nil
}

func rootDir(getenv func(string) string) string {
	if r := getenv("K3S_STANDIN_ROOT"); r != "" {
		return r
	}
	return "/"
}

// run is the stand-in's life; it returns when ctx ends (nil), on a crash
// (errCrash), or on a usage error.
func run(ctx context.Context, argv, environ []string, getenv func(string) string, stdout io.Writer) error {
	if len(argv) < 2 {
		return fmt.Errorf("usage: k3s server|agent [flags] (this is a test stand-in)")
	}
	switch argv[1] {
	case "--version", "-v", "version":
		fmt.Fprintf(stdout, "k3s version v0.0.0-standin (%s)\n", Name)
		return nil
	case "server", "agent":
	default:
		return fmt.Errorf("%q: the stand-in only plays `k3s server` and `k3s agent`", argv[1])
	}
	role := argv[1]
	root := rootDir(getenv)
	at := func(p string) string { return filepath.Join(root, p) }
	m := readMode(getenv, at(ModeFile))
	say := func(format string, args ...any) { fmt.Fprintf(stdout, "k3s-standin: "+format+"\n", args...) }
	say("%s started as %q, mode %s", Name, strings.Join(argv, " "), m.kind)

	if err := os.MkdirAll(at(StateDir), 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	starts, err := appendEvent(at(EventsFile), "start", role)
	if err != nil {
		return err
	}

	checks := k3sprereq.Check(k3sprereq.Env{Root: root, Proc: getenv("K3S_STANDIN_PROC"), Sys: getenv("K3S_STANDIN_SYS")})
	for _, c := range checks {
		say("check %s", c)
	}
	failed := k3sprereq.Failed(checks)
	say("%d of %d environment checks passed", len(checks)-len(failed), len(checks))

	env := append([]string(nil), environ...)
	sort.Strings(env)
	rec := Record{
		Standin: Name, PID: os.Getpid(), Started: time.Now().UTC(), StartCount: starts,
		Argv: argv, Role: role, Env: env, Mode: m.raw,
		Files:  map[string]*string{},
		Checks: checks, ChecksPassed: len(failed) == 0,
	}
	for _, f := range []string{ConfigFile, RegistriesFile} {
		if data, err := os.ReadFile(at(f)); err == nil {
			s := string(data)
			rec.Files[f] = &s
		} else {
			rec.Files[f] = nil
		}
	}

	start := time.Now()
	isHealthy := func() (bool, string) {
		switch {
		case m.kind == "unhealthy":
			return false, "stand-in mode unhealthy: never healthy"
		case m.kind == "healthy-after" && time.Since(start) < m.after:
			return false, fmt.Sprintf("stand-in mode %s: not yet", m.raw)
		case getenv("K3S_STANDIN_REQUIRE_CHECKS") == "1" && len(failed) > 0:
			return false, fmt.Sprintf("%d environment checks failed", len(failed))
		}
		return true, "ok"
	}

	var srv *http.Server
	if m.kind != "hang" {
		srv, rec.HealthURL, err = serveHealth(role, root, getenv, isHealthy)
		if err != nil {
			return err
		}
		say("answering health at %s", rec.HealthURL)
		defer srv.Close()
	} else {
		say("hanging as told: no health, ignoring SIGTERM")
	}
	if err := writeJSON(at(RecordFile), rec); err != nil {
		return err
	}

	var crash <-chan time.Time
	if m.kind == "crash-after" {
		crash = time.After(m.after)
	}
	// A ticker keeps the runtime from declaring a hanging stand-in (no
	// listener, no signal handler) deadlocked.
	alive := time.NewTicker(time.Hour)
	defer alive.Stop()
	var chatter <-chan time.Time
	if n, err := strconv.ParseFloat(getenv("K3S_STANDIN_LOG_EVERY"), 64); err == nil && n > 0 {
		t := time.NewTicker(time.Duration(n * float64(time.Second)))
		defer t.Stop()
		chatter = t.C
	}
	for lines := 1; ; {
		select {
		case <-chatter:
			fmt.Fprintf(stdout, "%s: still running, log line %d\n", Name, lines)
			lines++
		case <-ctx.Done():
			appendEvent(at(EventsFile), "stop", role)
			say("stopped")
			return nil
		case <-crash:
			appendEvent(at(EventsFile), "crash", role)
			return fmt.Errorf("%w (mode %s)", errCrash, m.raw)
		case <-alive.C:
		}
	}
}

// serveHealth starts the listener a real k3s would answer health on.
func serveHealth(role, root string, getenv func(string) string, healthy func() (bool, string)) (*http.Server, string, error) {
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, r *http.Request) {
		ok, why := healthy()
		if !ok {
			http.Error(w, "[-]k3s-standin failed: "+why, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if role == "agent" {
		mux.HandleFunc("/healthz", answer)
		addr := getenv("K3S_STANDIN_AGENT_ADDR")
		if addr == "" {
			addr = "127.0.0.1:10248"
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, "", fmt.Errorf("agent health listener: %w", err)
		}
		go srv.Serve(l)
		return srv, "http://" + l.Addr().String() + "/healthz", nil
	}
	for _, p := range []string{"/readyz", "/livez", "/healthz"} {
		mux.HandleFunc(p, answer)
	}
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	cert, pemCert, err := selfSigned()
	if err != nil {
		return nil, "", err
	}
	ca := filepath.Join(root, ServerCAFile)
	if err := os.MkdirAll(filepath.Dir(ca), 0o755); err != nil {
		return nil, "", fmt.Errorf("server CA: %w", err)
	}
	if err := os.WriteFile(ca, pemCert, 0o644); err != nil {
		return nil, "", fmt.Errorf("server CA: %w", err)
	}
	addr := getenv("K3S_STANDIN_SERVER_ADDR")
	if addr == "" {
		addr = ":6443"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("server health listener: %w", err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	go srv.Serve(tls.NewListener(l, srv.TLSConfig))
	port := l.Addr().(*net.TCPAddr).Port
	return srv, fmt.Sprintf("https://127.0.0.1:%d/readyz", port), nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost that is its
// own CA, so a client can verify it with the written server-ca.crt.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "k3s-standin", Organization: []string{"k3s stand-in for tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost", "kubernetes", "kubernetes.default"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// appendEvent appends "<time> <event> <role> pid=<pid>" to the events log
// and returns how many starts it now records.
func appendEvent(path, event, role string) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("events log: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s %s %s pid=%d\n", time.Now().UTC().Format(time.RFC3339Nano), event, role, os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("events log: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("events log: %w", err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "start" {
			n++
		}
	}
	return n, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}
