package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kestrel-os/kestrel/internal/progress"
)

const testVersion = "v1.33.7+k3s1"

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// releasePage serves a fake release laid out like GitHub's: the binary per
// arch and sha256sum-<arch>.txt listing it (plus an airgap line, as the real
// lists have). listed overrides what the list says for an asset.
type releasePage struct {
	binaries map[string][]byte // asset -> content
	listed   map[string]string // asset -> listed sha256 override
	hits     atomic.Int32
	length   bool // send Content-Length with a binary
}

func (p *releasePage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	prefix := "/" + testVersion + "/"
	// The version contains '+', which stays literal in the request path.
	if !strings.HasPrefix(r.URL.Path, prefix) {
		http.NotFound(w, r)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, prefix)
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		if name != "sha256sum-"+arch+".txt" {
			continue
		}
		asset, _ := AssetName(arch)
		s := sum(p.binaries[asset])
		if o, ok := p.listed[asset]; ok {
			s = o
		}
		fmt.Fprintf(w, "%s  k3s-airgap-images-%s.tar.zst\n%s  %s\n", strings.Repeat("0", 64), arch, s, asset)
		return
	}
	if b, ok := p.binaries[name]; ok {
		if p.length {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		w.Write(b)
		return
	}
	http.NotFound(w, r)
}

func newRelease() *releasePage {
	return &releasePage{binaries: map[string][]byte{
		"k3s":       []byte("k3s amd64 binary"),
		"k3s-arm64": []byte("k3s arm64 binary"),
		"k3s-armhf": []byte("k3s armhf binary"),
	}, listed: map[string]string{}}
}

func noEnv(string) string { return "" }

func TestFetchDownload(t *testing.T) {
	page := newRelease()
	srv := httptest.NewServer(page)
	defer srv.Close()

	tests := []struct {
		name    string
		arch    string
		pin     map[string]string
		tamper  func(p *releasePage)
		wantErr []string // substrings; nil means success
	}{
		{name: "amd64 matches list and pin", arch: "amd64", pin: map[string]string{"amd64": sum(page.binaries["k3s"])}},
		{name: "arm64 matches list, no pin", arch: "arm64"},
		{name: "arm is k3s-armhf", arch: "arm", pin: map[string]string{"arm": sum(page.binaries["k3s-armhf"])}},
		{
			name: "download does not match list", arch: "amd64",
			tamper:  func(p *releasePage) { p.listed["k3s"] = strings.Repeat("a", 64) },
			wantErr: []string{"refusing", "sha256sum-amd64.txt", strings.Repeat("a", 64)},
		},
		{
			name: "list does not match pin", arch: "arm64",
			pin:     map[string]string{"arm64": strings.Repeat("b", 64)},
			wantErr: []string{"versions.yaml pins", strings.Repeat("b", 64), "refusing"},
		},
		{
			name: "asset missing from list", arch: "amd64",
			tamper:  func(p *releasePage) { p.listed["k3s"] = "" },
			wantErr: []string{"no sha256 listed for k3s"},
		},
		{name: "unknown arch", arch: "riscv64", wantErr: []string{"unknown k3s arch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page.listed = map[string]string{}
			if tt.tamper != nil {
				tt.tamper(page)
			}
			cache := t.TempDir()
			res, err := Fetch(context.Background(), Options{
				Pin:      Pin{Version: testVersion, URL: srv.URL, SHA256: tt.pin},
				Arch:     tt.arch,
				CacheDir: cache,
				Getenv:   noEnv,
			})
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Fetch succeeded, want error containing %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				// A refused binary never stays in the cache.
				asset, _ := AssetName(tt.arch)
				if _, err := os.Stat(filepath.Join(cache, testVersion, tt.arch, asset)); err == nil {
					t.Errorf("refused binary left in cache")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			asset, _ := AssetName(tt.arch)
			got, err := os.ReadFile(res.Binary)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(page.binaries[asset]) || res.SHA256 != sum(got) || res.Source != FromDownload {
				t.Errorf("got %q sha %s source %s", got, res.SHA256, res.Source)
			}
			// Second fetch is served from the cache without the network.
			before := page.hits.Load()
			res2, err := Fetch(context.Background(), Options{
				Pin: Pin{Version: testVersion, URL: srv.URL, SHA256: tt.pin}, Arch: tt.arch, CacheDir: cache, Getenv: noEnv,
			})
			if err != nil || res2.Source != FromCache || page.hits.Load() != before {
				t.Errorf("second fetch: %+v, %v, hits %d->%d; want cache hit", res2, err, before, page.hits.Load())
			}
		})
	}
}

func TestFetchCorruptCacheRedownloads(t *testing.T) {
	page := newRelease()
	srv := httptest.NewServer(page)
	defer srv.Close()
	cache := t.TempDir()
	dir := filepath.Join(cache, testVersion, "amd64")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "k3s"), []byte("truncated"), 0o755)
	res, err := Fetch(context.Background(), Options{
		Pin:  Pin{Version: testVersion, URL: srv.URL, SHA256: map[string]string{"amd64": sum(page.binaries["k3s"])}},
		Arch: "amd64", CacheDir: cache, Getenv: noEnv,
	})
	if err != nil || res.Source != FromDownload || res.SHA256 != sum(page.binaries["k3s"]) {
		t.Fatalf("got %+v, %v; want a fresh download", res, err)
	}
}

func TestFetchUnreachable(t *testing.T) {
	// A port nothing listens on: take one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String() + "/releases"
	l.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()

	for _, tc := range []struct{ name, base string }{
		{"connection refused", base},
		{"404", notFound.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Fetch(context.Background(), Options{
				Pin: Pin{Version: testVersion, URL: tc.base}, Arch: "arm64", CacheDir: t.TempDir(), Getenv: noEnv,
			})
			if err == nil {
				t.Fatal("Fetch succeeded against an unreachable URL")
			}
			for _, w := range []string{tc.base + "/" + testVersion + "/sha256sum-arm64.txt", "K3S_BINARY="} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestFetchLocalBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "k3s")
	os.WriteFile(bin, []byte("local k3s"), 0o755)
	images := filepath.Join(dir, "k3s-airgap-images-amd64.tar.zst")
	os.WriteFile(images, []byte("images"), 0o644)
	good := sum([]byte("local k3s"))
	other := strings.Repeat("c", 64)

	tests := []struct {
		name    string
		pin     string
		env     map[string]string
		wantErr string
	}{
		{name: "matches pin", pin: good, env: map[string]string{EnvBinary: bin, EnvAirgapImages: images}},
		{name: "no pin", env: map[string]string{EnvBinary: bin}},
		{name: "pin mismatch refused", pin: other, env: map[string]string{EnvBinary: bin}, wantErr: "K3S_BINARY_SHA256=" + good},
		{name: "explicit sha accepts other build", pin: other, env: map[string]string{EnvBinary: bin, EnvBinarySHA256: good}},
		{name: "explicit sha mismatch", env: map[string]string{EnvBinary: bin, EnvBinarySHA256: other}, wantErr: "refusing"},
		{name: "missing binary", env: map[string]string{EnvBinary: filepath.Join(dir, "nope")}, wantErr: "K3S_BINARY"},
		{name: "missing images", env: map[string]string{EnvBinary: bin, EnvAirgapImages: filepath.Join(dir, "nope")}, wantErr: "K3S_AIRGAP_IMAGES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Fetch(context.Background(), Options{
				// The URL is unreachable: a local binary must not touch it.
				Pin:      Pin{Version: testVersion, URL: "http://127.0.0.1:1", SHA256: map[string]string{"amd64": tt.pin}},
				Arch:     "amd64",
				CacheDir: t.TempDir(),
				Getenv:   func(k string) string { return tt.env[k] },
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Binary != bin || res.SHA256 != good || res.Source != FromLocal || res.AirgapImages != tt.env[EnvAirgapImages] {
				t.Errorf("got %+v", res)
			}
		})
	}
}

func TestParsePin(t *testing.T) {
	good := strings.Repeat("d", 64)
	tests := []struct {
		name, yaml string
		want       Pin
		wantErr    string
	}{
		{
			name: "with other sections",
			yaml: "kernel:\n  amd64: 6.1.0-40\nk3s:\n  version: v1.33.7+k3s1\n  sha256:\n    amd64: " + strings.ToUpper(good) + "\n",
			want: Pin{Version: "v1.33.7+k3s1", SHA256: map[string]string{"amd64": good}},
		},
		{name: "missing section", yaml: "kernel: {}\n", wantErr: "no k3s: section"},
		{name: "unknown key", yaml: "k3s:\n  version: v1\n  sha: x\n", wantErr: "sha"},
		{name: "bad arch", yaml: "k3s:\n  version: v1\n  sha256:\n    mips: " + good + "\n", wantErr: "unknown k3s arch"},
		{name: "bad sum", yaml: "k3s:\n  version: v1\n  sha256:\n    arm: abc\n", wantErr: "not a sha256"},
		{name: "no version", yaml: "k3s:\n  url: http://x\n", wantErr: "version is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePin("versions.yaml", []byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != tt.want.Version || fmt.Sprint(got.SHA256) != fmt.Sprint(tt.want.SHA256) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The repository's own versions.yaml must parse and pin every arch.
func TestRepositoryVersionsFile(t *testing.T) {
	p, err := LoadPin("../../../versions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		if p.SHA256[arch] == "" {
			t.Errorf("versions.yaml pins no sha256 for %s", arch)
		}
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "k3s-src")
	os.WriteFile(bin, []byte("binary"), 0o600)
	images := filepath.Join(dir, "k3s-airgap-images-arm64.tar.zst")
	os.WriteFile(images, []byte("images"), 0o600)
	root := filepath.Join(dir, "rootfs")
	res := Result{Binary: bin, SHA256: sum([]byte("binary")), AirgapImages: images}
	for i := 0; i < 2; i++ { // twice: install is repeatable
		if err := Install(res, root); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "usr/bin/k3s"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("k3s: %v %v", fi, err)
	}
	for _, l := range RootfsLinks {
		if target, err := os.Readlink(filepath.Join(root, "usr/bin", l)); err != nil || target != "k3s" {
			t.Errorf("%s -> %q, %v", l, target, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, RootfsAirgapDir, filepath.Base(images))); err != nil || string(b) != "images" {
		t.Errorf("airgap images: %q %v", b, err)
	}
	res.SHA256 = strings.Repeat("e", 64)
	if err := Install(res, root); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Errorf("Install with a changed binary: %v", err)
	}
}

func TestFetchRefusesStandin(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "k3s")
	// The marker straddles the 1 MiB read boundary.
	content := append(make([]byte, 1<<20-5), []byte("x "+StandinMarker+" y")...)
	os.WriteFile(bin, content, 0o755)
	opt := Options{
		Pin: Pin{Version: testVersion}, Arch: "amd64", CacheDir: t.TempDir(),
		Getenv: func(k string) string { return map[string]string{EnvBinary: bin}[k] },
	}
	if _, err := Fetch(context.Background(), opt); err == nil || !strings.Contains(err.Error(), "stand-in") {
		t.Fatalf("release build took the stand-in: %v", err)
	}
	opt.AllowStandin = true
	res, err := Fetch(context.Background(), opt)
	if err != nil || !res.Standin {
		t.Fatalf("test build: %+v %v", res, err)
	}
	os.WriteFile(bin, []byte("real k3s"), 0o755)
	if res, err := Fetch(context.Background(), opt); err != nil || res.Standin {
		t.Fatalf("real binary flagged as stand-in: %+v %v", res, err)
	}
}

// TestFetchProgress: a download reports its size, its progress at each
// tenth when the server gives the length, and bytes and rate at the end;
// without a length, when it started and the same end line.
func TestFetchProgress(t *testing.T) {
	const size = 3 << 20
	tests := []struct {
		name    string
		length  bool
		first   string // regular expressions
		running bool   // lines at each tenth in between
	}{
		{name: "length known", length: true, first: `: 3\.0 MiB$`, running: true},
		{name: "length unknown", first: `: started$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := newRelease()
			page.binaries["k3s"] = make([]byte, size)
			page.length = tt.length
			srv := httptest.NewServer(page)
			defer srv.Close()
			var out strings.Builder
			if _, err := Fetch(context.Background(), Options{
				Pin: Pin{Version: testVersion, URL: srv.URL}, Arch: "amd64", CacheDir: t.TempDir(), Getenv: noEnv,
				Log: progress.New(&out),
			}); err != nil {
				t.Fatal(err)
			}
			what := regexp.QuoteMeta("k3s: download " + srv.URL + "/" + testVersion + "/k3s")
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			var transfer []string
			for _, l := range lines {
				if regexp.MustCompile("^" + what).MatchString(l) {
					transfer = append(transfer, l)
				}
			}
			if len(transfer) < 2 {
				t.Fatalf("download lines:\n%s", out.String())
			}
			if !regexp.MustCompile("^" + what + tt.first).MatchString(transfer[0]) {
				t.Errorf("first line %q, want it to match %s", transfer[0], tt.first)
			}
			last := transfer[len(transfer)-1]
			if !regexp.MustCompile("^" + what + `: 3\.0 MiB in \S+ \(\d+(\.\d+)? [KMG]?i?B/s\)$`).MatchString(last) {
				t.Errorf("last line %q, want bytes, time and rate", last)
			}
			running := transfer[1 : len(transfer)-1]
			if tt.running != (len(running) > 0) {
				t.Errorf("running lines %q, want some: %v", running, tt.running)
			}
			prev := 0
			for _, l := range running {
				m := regexp.MustCompile(`: \S+ \S+ of 3\.0 MiB \((\d+)%\)$`).FindStringSubmatch(l)
				if m == nil {
					t.Errorf("running line %q", l)
					continue
				}
				if pct, _ := strconv.Atoi(m[1]); pct <= prev || pct >= 100 {
					t.Errorf("running line %q after %d%%", l, prev)
				} else {
					prev = pct
				}
			}
			if !strings.Contains(out.String(), "k3s: downloaded ") {
				t.Errorf("no line saying what was chosen:\n%s", out.String())
			}
		})
	}
}
