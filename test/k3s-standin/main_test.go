package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/k3s/health"
)

// standin runs the stand-in in-process against a temporary root.
type standin struct {
	root   string
	env    map[string]string
	cancel context.CancelFunc
	done   chan error
	out    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range map[string]string{
		ConfigFile:         "server: https://10.0.0.1:6443\ntoken: t\n",
		"/etc/resolv.conf": "nameserver 10.0.2.3\n",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(c), 0o600)
	}
	return root
}

func start(t *testing.T, root string, argv []string, env map[string]string) *standin {
	t.Helper()
	full := map[string]string{
		"K3S_STANDIN_ROOT":        root,
		"K3S_STANDIN_PROC":        filepath.Join(root, "fakeproc"),
		"K3S_STANDIN_SYS":         filepath.Join(root, "fakesys"),
		"K3S_STANDIN_SERVER_ADDR": "127.0.0.1:0",
		"K3S_STANDIN_AGENT_ADDR":  "127.0.0.1:0",
	}
	for k, v := range env {
		full[k] = v
	}
	var environ []string
	for k, v := range full {
		environ = append(environ, k+"="+v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &standin{root: root, env: full, cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	go func() { s.done <- run(ctx, argv, environ, func(k string) string { return full[k] }, s.out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			s.done <- err
		case <-time.After(5 * time.Second):
		}
	})
	return s
}

// record waits for record.json of start number n.
func (s *standin) record(t *testing.T, n int) Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var r Record
		if data, err := os.ReadFile(filepath.Join(s.root, RecordFile)); err == nil && json.Unmarshal(data, &r) == nil && r.StartCount == n {
			return r
		}
		select {
		case err := <-s.done:
			t.Fatalf("stand-in exited early: %v\n%s", err, s.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no record for start %d\n%s", n, s.out)
	return Record{}
}

func get(t *testing.T, url string, client *http.Client) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func insecure() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func TestServerRecordsAndServesReadyz(t *testing.T) {
	root := newRoot(t)
	argv := []string{"/usr/bin/k3s", "server", "--cluster-init"}
	s := start(t, root, argv, map[string]string{"FOO": "bar"})
	r := s.record(t, 1)
	if r.Role != "server" || strings.Join(r.Argv, " ") != strings.Join(argv, " ") || !strings.Contains(r.Standin, "NOT k3s") {
		t.Errorf("record %+v", r)
	}
	if !contains(r.Env, "FOO=bar") {
		t.Errorf("env %v lacks FOO=bar", r.Env)
	}
	if c := r.Files[ConfigFile]; c == nil || !strings.Contains(*c, "token: t") {
		t.Errorf("config.yaml copy %v", c)
	}
	if _, ok := r.Files[RegistriesFile]; !ok || r.Files[RegistriesFile] != nil {
		t.Errorf("registries.yaml should be recorded as null, got %v", r.Files)
	}
	// The fake tree lacks /proc and /sys: checks are reported, and fail.
	if r.ChecksPassed || len(r.Checks) < 15 {
		t.Errorf("checks %v passed=%v", r.Checks, r.ChecksPassed)
	}
	if !strings.Contains(s.out.String(), "check resolv-conf                  PASS") || !strings.Contains(s.out.String(), "FAIL") {
		t.Errorf("stdout does not report checks:\n%s", s.out)
	}

	// Verified with the CA it wrote where k3s keeps its server CA.
	pemCA, err := os.ReadFile(filepath.Join(root, ServerCAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	verified := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, body := get(t, r.HealthURL, verified); code != 200 || body != "ok" {
		t.Errorf("readyz: %d %q", code, body)
	}

	// And internal/node/k3s/health, which stage 2 uses, accepts it via the written CA.
	if err := health.Wait(context.Background(), health.Options{Role: "server", URL: r.HealthURL, Root: root, Timeout: 5 * time.Second}); err != nil {
		t.Errorf("k3shealth.Wait: %v", err)
	}

	s.cancel()
	err = <-s.done
	s.done <- err // for the cleanup
	if err != nil {
		t.Errorf("stop: %v", err)
	}
	events, _ := os.ReadFile(filepath.Join(root, EventsFile))
	if !strings.Contains(string(events), " start server ") || !strings.Contains(string(events), " stop server ") {
		t.Errorf("events:\n%s", events)
	}
}

func TestAgentHealthzAndModes(t *testing.T) {
	tests := []struct {
		name     string
		mode     string // env
		modeFile string
		env      map[string]string
		want     int
	}{
		{name: "ok", want: 200},
		{name: "unhealthy via env", mode: "unhealthy", want: 503},
		{name: "unhealthy via file", modeFile: "unhealthy\n", want: 503},
		{name: "env beats file", mode: "ok", modeFile: "unhealthy", want: 200},
		{name: "healthy later", mode: "healthy-after=60", want: 503},
		{name: "required checks fail", env: map[string]string{"K3S_STANDIN_REQUIRE_CHECKS": "1"}, want: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRoot(t)
			if tt.modeFile != "" {
				os.MkdirAll(filepath.Join(root, StateDir), 0o755)
				os.WriteFile(filepath.Join(root, ModeFile), []byte(tt.modeFile), 0o644)
			}
			env := map[string]string{"K3S_STANDIN_MODE": tt.mode}
			for k, v := range tt.env {
				env[k] = v
			}
			s := start(t, root, []string{"k3s", "agent"}, env)
			r := s.record(t, 1)
			if !strings.HasPrefix(r.HealthURL, "http://127.0.0.1:") || !strings.HasSuffix(r.HealthURL, "/healthz") {
				t.Fatalf("health url %q", r.HealthURL)
			}
			if code, body := get(t, r.HealthURL, insecure()); code != tt.want {
				t.Errorf("healthz: %d %q, want %d", code, body, tt.want)
			}
		})
	}
}

func TestCrashAndRestartCount(t *testing.T) {
	root := newRoot(t)
	for i := 1; i <= 3; i++ {
		s := start(t, root, []string{"k3s", "server"}, map[string]string{"K3S_STANDIN_MODE": "crash-after=0.05"})
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			if !errors.Is(err, errCrash) {
				t.Fatalf("run %d: %v, want a crash", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not crash")
		}
		var r Record
		data, _ := os.ReadFile(filepath.Join(root, RecordFile))
		json.Unmarshal(data, &r)
		if r.StartCount != i {
			t.Errorf("start_count %d, want %d", r.StartCount, i)
		}
	}
}

func TestHangAnswersNothing(t *testing.T) {
	root := newRoot(t)
	s := start(t, root, []string{"k3s", "server"}, map[string]string{"K3S_STANDIN_MODE": "hang"})
	r := s.record(t, 1)
	if r.HealthURL != "" {
		t.Errorf("hang serves health at %s", r.HealthURL)
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		kind    string
		after   time.Duration
		wantErr bool
	}{
		{"", "ok", 0, false},
		{"crash", "crash-after", 0, false},
		{"crash-after=2.5", "crash-after", 2500 * time.Millisecond, false},
		{"healthy-after=3", "healthy-after", 3 * time.Second, false},
		{"hang", "hang", 0, false},
		{"crash-after", "", 0, true},
		{"crash-after=-1", "", 0, true},
		{"explode", "", 0, true},
	}
	for _, tt := range tests {
		m, err := parseMode(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && (m.kind != tt.kind || m.after != tt.after)) {
			t.Errorf("parseMode(%q) = %+v, %v", tt.in, m, err)
		}
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"k3s", "--version"}, nil, func(string) string { return "" }, &out); err != nil || !strings.Contains(out.String(), "STAND-IN") {
		t.Errorf("--version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"k3s", "etcd-snapshot"}, nil, func(string) string { return "" }, &out); err == nil {
		t.Error("unknown subcommand accepted")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
