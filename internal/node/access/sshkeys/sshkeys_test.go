package sshkeys

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
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
	srv := httptest.NewServer(mux)
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := (&Resolver{GitHubURL: srv.URL}).Resolve(ctx, []string{"github:alice"})
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("error %v", err)
	}
}
