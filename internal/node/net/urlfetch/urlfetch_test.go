package urlfetch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	const body = "hostname: fetched\n"
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(body)))
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	defer plain.Close()
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, plain.URL+"/c.yaml", http.StatusFound)
		case "/to-https":
			http.Redirect(w, r, "/c.yaml", http.StatusFound)
		case "/big":
			w.Write(make([]byte, 2<<20))
		default:
			w.Write([]byte(body))
		}
	}))
	defer tls.Close()
	// An http URL that redirects to https is fine when http is allowed.
	up := httptest.NewServer(http.RedirectHandler(tls.URL+"/c.yaml", http.StatusFound))
	defer up.Close()

	for _, tc := range []struct {
		name, url string
		allowHTTP bool
		wantErr   string // "" for success
	}{
		{"https", tls.URL + "/c.yaml", false, ""},
		{"https pinned", tls.URL + "/c.yaml#sha256=" + sum, false, ""},
		{"https pinned, wrong sum", tls.URL + "/c.yaml#sha256=" + strings.Repeat("0", 64), false, "sha256 "},
		{"unknown fragment", tls.URL + "/c.yaml#v2", false, "only #sha256="},
		{"short sum", tls.URL + "/c.yaml#sha256=abcd", false, "only #sha256="},
		{"http refused", plain.URL + "/c.yaml", false, "plain http"},
		{"http pinned still refused", plain.URL + "/c.yaml#sha256=" + sum, false, "plain http"},
		{"http with the opt-in", plain.URL + "/c.yaml", true, ""},
		{"http to https with the opt-in", up.URL, true, ""},
		{"https to http refused", tls.URL + "/to-http", false, "not https"},
		{"https to http refused even with the opt-in", tls.URL + "/to-http", true, "not https"},
		{"https to https", tls.URL + "/to-https", false, ""},
		{"404", plain.URL + "/missing", true, "404"},
		{"too big", tls.URL + "/big", false, "more than"},
		{"ftp", "ftp://example.invalid/c.yaml", true, "only https"},
		{"password kept out of errors", "http://user:secret@example.invalid/c.yaml", false, "user:xxxxx@"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Get(context.Background(), tc.url, Options{Client: tls.Client(), AllowHTTP: tc.allowHTTP, MaxBody: 1 << 20})
			if tc.wantErr == "" {
				if err != nil || string(b) != body {
					t.Errorf("got %q, %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}
