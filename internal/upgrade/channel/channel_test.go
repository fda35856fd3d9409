package channel

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
)

func TestResolve(t *testing.T) {
	var gotCluster, gotLatest string
	mux := http.NewServeMux()
	mux.HandleFunc("/latest", func(w http.ResponseWriter, r *http.Request) {
		gotCluster, gotLatest = r.Header.Get(HeaderClusterID), r.Header.Get(HeaderLatestVersion)
		http.Redirect(w, r, "/releases/tag/v1.30.2+k3s1", http.StatusFound)
	})
	mux.HandleFunc("/releases/tag/", func(w http.ResponseWriter, r *http.Request) { t.Error("redirect was followed") })
	mux.HandleFunc("/stable/v2.0.0", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/other", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/emptyloc", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/")
		w.WriteHeader(http.StatusFound)
	})
	for name, loc := range map[string]string{
		"/digest":    "/releases/tag/v1.0.0@sha256:0123456789abcdef",
		"/dash":      "/releases/tag/-v1.0.0",
		"/long":      "/releases/tag/v" + strings.Repeat("1", 128),
		"/colon":     "/releases/tag/evil.example:5000",
		"/semicolon": "/releases/tag/v1.0.0%3Bid",
	} {
		mux.HandleFunc(name, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, loc, http.StatusFound) })
	}
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	tests := []struct {
		name, path, want, errHas string
		malformed                bool
	}{
		{"302 location", "/latest", "v1.30.2-k3s1", "", false},
		{"200 own path", "/stable/v2.0.0", "v2.0.0", "", false},
		{"301 is not 302", "/moved", "", "unexpected response", false},
		{"500", "/broken", "", "500", false},
		{"302 without version", "/emptyloc", "", "no version", true},
		{"302 to a digest", "/digest", "", "not a valid image tag", true},
		{"302 to a leading dash", "/dash", "", "not a valid image tag", true},
		{"302 to 129 characters", "/long", "", "not a valid image tag", true},
		{"302 to a registry host", "/colon", "", "not a valid image tag", true},
		{"302 to an escaped semicolon", "/semicolon", "", "not a valid image tag", true},
	}
	client := srv.Client()
	client.Timeout = 5 * time.Second
	r := &Resolver{Client: client}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), srv.URL+tc.path, "v1.0.0", "cluster-uid")
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want %q", err, tc.errHas)
				}
				if tc.malformed != errors.Is(err, ErrMalformed) {
					t.Errorf("errors.Is(ErrMalformed) = %t", !tc.malformed)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if gotCluster != "cluster-uid" || gotLatest != "v1.0.0" {
		t.Errorf("headers: cluster %q latest %q", gotCluster, gotLatest)
	}
	if _, err := r.Resolve(context.Background(), "https://127.0.0.1:1/x", "", ""); err == nil {
		t.Error("unreachable channel resolved")
	}
}

// TestHTTPNeedsOptIn: a plain-http channel is refused unless its Plan
// carries AnnotationAllowHTTP: "true".
func TestHTTPNeedsOptIn(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("/releases/tag/v1.2.3", http.StatusFound))
	defer srv.Close()
	r := &Resolver{Client: &http.Client{Timeout: 5 * time.Second}}
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		url         string
		annotations map[string]string
		want        string
	}{
		{"http without opt-in", srv.URL + "/latest", nil, ""},
		{"http opt-in not true", srv.URL + "/latest", map[string]string{AnnotationAllowHTTP: "yes"}, ""},
		{"http with opt-in", srv.URL + "/latest", map[string]string{AnnotationAllowHTTP: "true"}, "v1.2.3"},
		{"ftp even with opt-in", "ftp://example.invalid/latest", map[string]string{AnnotationAllowHTTP: "true"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &plan.Plan{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}, Spec: plan.PlanSpec{Channel: tc.url}}
			got, err := r.ResolvePlan(ctx, p, "")
			if tc.want == "" {
				if !errors.Is(err, ErrInsecure) {
					t.Fatalf("ResolvePlan = %q, %v; want ErrInsecure", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ResolvePlan = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := r.Resolve(ctx, srv.URL+"/latest", "", ""); !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), AnnotationAllowHTTP) {
		t.Errorf("Resolve over http: %v, want ErrInsecure naming the annotation", err)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {10, 10 * time.Second}} {
		if got := Backoff(tc.n, time.Second, 10*time.Second); got != tc.want {
			t.Errorf("Backoff(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}
