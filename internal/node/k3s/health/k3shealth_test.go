package health

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flaky answers 503 for the first `bad` requests, then 200.
func flaky(bad int32, path string) (http.Handler, *atomic.Int32) {
	var n atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		if n.Add(1) <= bad {
			http.Error(w, "[-]etcd failed: not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}), &n
}

func TestWait(t *testing.T) {
	tests := []struct {
		name    string
		role    string
		tls     bool
		bad     int32
		timeout time.Duration
		wantErr string
	}{
		{name: "agent healthy at once", role: "agent", timeout: 2 * time.Second},
		{name: "agent healthy after 3 polls", role: "agent", bad: 3, timeout: 5 * time.Second},
		{name: "server over self-signed TLS", role: "server", tls: true, bad: 2, timeout: 5 * time.Second},
		{name: "never healthy", role: "server", tls: true, bad: 1 << 30, timeout: 300 * time.Millisecond, wantErr: "HTTP 503: [-]etcd failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/healthz"
			if tt.role == "server" {
				path = "/readyz"
			}
			h, n := flaky(tt.bad, path)
			var srv *httptest.Server
			if tt.tls {
				srv = httptest.NewTLSServer(h)
			} else {
				srv = httptest.NewServer(h)
			}
			defer srv.Close()
			start := time.Now()
			err := Wait(context.Background(), Options{
				Role: tt.role, URL: srv.URL + path, Timeout: tt.timeout, Interval: 20 * time.Millisecond,
				Root: t.TempDir(), Logf: t.Logf,
			})
			if tt.wantErr != "" {
				if !errors.Is(err, ErrNotHealthy) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), srv.URL) {
					t.Fatalf("err = %v, want ErrNotHealthy naming the URL and %q", err, tt.wantErr)
				}
				if el := time.Since(start); el > tt.timeout+2*time.Second {
					t.Errorf("took %v for a %v timeout", el, tt.timeout)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != tt.bad+1 {
				t.Errorf("%d probes, want %d", got, tt.bad+1)
			}
		})
	}
}

func TestWaitNothingListening(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	url := "http://" + l.Addr().String() + "/healthz"
	l.Close()
	err := Wait(context.Background(), Options{Role: "agent", URL: url, Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond})
	if !errors.Is(err, ErrNotHealthy) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := Wait(ctx, Options{Role: "agent", URL: srv.URL, Timeout: time.Minute, Interval: 10 * time.Millisecond})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotHealthy) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestDefaultURLs(t *testing.T) {
	for role, want := range map[string]string{"server": ServerURL, "agent": AgentURL} {
		if got, err := (Options{Role: role}).url(); err != nil || got != want {
			t.Errorf("%s: %q %v", role, got, err)
		}
	}
	if _, err := (Options{Role: "master"}).url(); err == nil {
		t.Error("bad role accepted")
	}
}

// The k3s CA, when present, is used to verify the server; the admin client
// certificate, when present, is presented (k3s has anonymous auth off).
func TestServerTLSFiles(t *testing.T) {
	clientPEM, clientKeyPEM := selfSignedPEM(t, "system:admin")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "system:admin" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok"))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	serverCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	otherCA, _ := selfSignedPEM(t, "other-ca")

	tests := []struct {
		name  string
		files map[string][]byte
		ok    bool
		want  string
	}{
		{"no files: skip verify, no client cert", nil, false, "HTTP 401 (client certificate"},
		{"client cert, no CA", map[string][]byte{AdminCertFile: clientPEM, AdminKeyFile: clientKeyPEM}, true, "200 ok"},
		{"client cert and right CA", map[string][]byte{ServerCA: serverCA, AdminCertFile: clientPEM, AdminKeyFile: clientKeyPEM}, true, "200 ok"},
		{"wrong CA", map[string][]byte{ServerCA: otherCA}, false, "certificate"},
		{"CA file not PEM", map[string][]byte{ServerCA: []byte("junk")}, false, "no PEM certificate"},
		{"cert without key", map[string][]byte{AdminCertFile: clientPEM}, false, "admin client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, data := range tt.files {
				os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
				os.WriteFile(filepath.Join(root, p), data, 0o600)
			}
			ok, detail := Probe(context.Background(), Options{Role: "server", URL: srv.URL + "/readyz", Root: root})
			if ok != tt.ok || !strings.Contains(detail, tt.want) {
				t.Errorf("Probe = %v %q, want %v containing %q", ok, detail, tt.ok, tt.want)
			}
		})
	}
}

func selfSignedPEM(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TestSquatterRefused: a local user who binds the health port before k3s
// and answers 200 does not make k3s healthy. The squatter is this test
// binary run again as uid 65534 (TestHelperSquatter); the same answer from
// a root-owned server (this process) is the control.
func TestSquatterRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a server as another user")
	}
	root := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer root.Close()
	for _, tc := range []struct {
		name    string
		url     func(t *testing.T) string
		wantErr string
	}{
		{"root's server", func(*testing.T) string { return root.URL }, ""},
		{"a user's server", squatter, "uid 65534, not 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Wait(context.Background(), Options{Role: "agent", URL: tc.url(t) + "/healthz",
				Timeout: 300 * time.Millisecond, Interval: 50 * time.Millisecond, Root: t.TempDir()})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrNotHealthy) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrNotHealthy with %q", err, tc.wantErr)
			}
		})
	}
}

// squatter starts TestHelperSquatter as uid 65534 and returns its URL.
func squatter(t *testing.T) string {
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for d := dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // uid 65534 must reach the binary
	}
	bin := filepath.Join(dir, "squatter.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperSquatter$")
	cmd.Env = append(os.Environ(), "K3SHEALTH_SQUATTER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("squatter: %v", err)
	}
	return "http://" + strings.TrimSpace(line)
}

// TestHelperSquatter is the squatter process of TestSquatterRefused: it
// prints its address and answers 200 to everything.
func TestHelperSquatter(t *testing.T) {
	if os.Getenv("K3SHEALTH_SQUATTER") != "1" {
		t.Skip("the squatter process of TestSquatterRefused")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(ln.Addr())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
}
