package sshkeys

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func key(t *testing.T, comment string) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	sp, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}

func TestResolve(t *testing.T) {
	literal, gh1, gh2, gl, file := key(t, "literal"), key(t, "gh1"), key(t, "gh2"), key(t, "gl"), key(t, "file")
	mux := http.NewServeMux()
	mux.HandleFunc("/gh/alice.keys", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(gh1 + "\n" + gh2 + "\n"))
	})
	mux.HandleFunc("/gl/bob.keys", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(gl + "\r\n\r\n"))
	})
	mux.HandleFunc("/keys.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# team keys\n" + file + "\ncommand=\"/bin/false\" " + gh1 + "\ngarbage line\n" + literal + "\n"))
	})
	mux.HandleFunc("/gh/empty.keys", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	r := &Resolver{Client: srv.Client(), GitHubURL: srv.URL + "/gh", GitLabURL: srv.URL + "/gl/"}

	got, err := r.Resolve(context.Background(), []string{literal, "github:alice", "gitlab:bob", srv.URL + "/keys.txt", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{literal, gh1, gh2, gl, file}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}

	got, err = r.Resolve(context.Background(), []string{
		"github:nosuchuser", "github:empty", "github:../etc", "not a key", srv.URL + "/keys.txt",
	})
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, s := range []string{
		"ssh_authorized_keys[0] github:nosuchuser: GET " + srv.URL + "/gh/nosuchuser.keys: 404",
		"ssh_authorized_keys[1] github:empty: GET " + srv.URL + "/gh/empty.keys: no public keys",
		`ssh_authorized_keys[2] github:../etc: invalid user name`,
		"ssh_authorized_keys[3]: not a public key",
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if !slices.Equal(got, []string{file, literal}) {
		t.Errorf("keys of the good entry not returned next to failures: %q", got)
	}
}

func TestIsRemote(t *testing.T) {
	for e, want := range map[string]bool{
		"github:alice": true, "gitlab:bob": true, "https://x/keys": true, "http://x/keys": true,
		"ssh-ed25519 AAAA": false, "": false,
	} {
		if IsRemote(e) != want {
			t.Errorf("IsRemote(%q) = %v", e, !want)
		}
	}
}

func TestCancelled(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Resolver{GitHubURL: srv.URL, Client: srv.Client()}).Resolve(ctx, []string{"github:alice"})
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("error %v", err)
	}
}

// TestPlainHTTPNeedsOptIn: a key list over http is refused unless
// AllowHTTP (kestrel.allow_insecure_http), and a pinned https list must
// match its pin (issue 10 item 9).
func TestPlainHTTPNeedsOptIn(t *testing.T) {
	key := key(t, "pinned")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, key) })
	plain := httptest.NewServer(h)
	defer plain.Close()
	tls := httptest.NewTLSServer(h)
	defer tls.Close()
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(key+"\n")))
	for _, tc := range []struct {
		entry     string
		allowHTTP bool
		wantErr   string
	}{
		{plain.URL + "/keys", false, "plain http"},
		{plain.URL + "/keys", true, ""},
		{tls.URL + "/keys#sha256=" + sum, false, ""},
		{tls.URL + "/keys#sha256=" + strings.Repeat("f", 64), false, "sha256"},
	} {
		r := &Resolver{Client: tls.Client(), AllowHTTP: tc.allowHTTP}
		got, err := r.Resolve(context.Background(), []string{tc.entry})
		if tc.wantErr == "" {
			if err != nil || !slices.Equal(got, []string{key}) {
				t.Errorf("%s (http allowed %v): %q, %v", tc.entry, tc.allowHTTP, got, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || len(got) != 0 {
			t.Errorf("%s (http allowed %v): %q, %v; want an error with %q", tc.entry, tc.allowHTTP, got, err, tc.wantErr)
		}
	}
}

// TestCacheKeepsAccess: keys fetched once stay available when the source
// later fails (server down, no network at boot), and the failure is still
// reported.
func TestCacheKeepsAccess(t *testing.T) {
	k1 := key(t, "fetched")
	up := true
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, k1)
	}))
	defer srv.Close()
	cache := filepath.Join(t.TempDir(), "var/lib/kestrel/ssh-keys.json")
	r := &Resolver{Client: srv.Client(), GitHubURL: srv.URL, CachePath: cache}
	entries := []string{"github:alice"}
	if got := r.Cached(entries); len(got) != 0 {
		t.Errorf("cached keys before any fetch: %q", got)
	}
	if got, err := r.Resolve(context.Background(), entries); err != nil || !slices.Equal(got, []string{k1}) {
		t.Fatalf("first fetch: %q %v", got, err)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file: %v %v", fi, err)
	}
	up = false
	got, err := r.Resolve(context.Background(), entries)
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "kept the 1 keys") {
		t.Errorf("failing source: error %v, want the 502 and the fallback reported", err)
	}
	if !slices.Equal(got, []string{k1}) {
		t.Errorf("failing source: keys %q, want the cached %q", got, k1)
	}
	// Without the network, as the boot phase asks.
	offline := &Resolver{CachePath: cache}
	if got := offline.Cached([]string{"ssh-ed25519 AAAAliteral", "github:alice", "gitlab:nobody"}); !slices.Equal(got, []string{k1}) {
		t.Errorf("Cached = %q", got)
	}
}
