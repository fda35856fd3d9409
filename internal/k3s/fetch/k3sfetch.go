// Package fetch gets the pinned upstream k3s binary for one target arch
// onto the build host, verified, so the builder can put it into a rootfs.
//
// Sources, in order:
//
//  1. K3S_BINARY=/path/to/k3s (and optionally K3S_AIRGAP_IMAGES=/path/to/
//     k3s-airgap-images-<arch>.tar[.zst|.gz]) for offline builds. The binary
//     is checked against the pinned sha256; a deliberately different build
//     is accepted only when K3S_BINARY_SHA256 names its exact sha256. The
//     test stand-in (test/k3s-standin) is refused unless
//     Options.AllowStandin says this is a test image.
//  2. The cache, .cache/k3s/<version>/<arch>/, when its binary still
//     matches the pin (or the cached published list when nothing is pinned).
//  3. A download from a base URL laid out like the GitHub release page:
//     <base>/<version>/k3s (amd64), k3s-arm64, k3s-armhf, and the published
//     lists sha256sum-amd64.txt, sha256sum-arm64.txt, sha256sum-arm.txt.
//     The list is fetched first; the binary is refused unless its sha256
//     equals the list's entry and, when versions.yaml pins one, the pin.
//
// Limits: only linux amd64, arm64 and arm (armhf) are known; the airgap
// images tarball is never downloaded (it is large and optional: give it
// with K3S_AIRGAP_IMAGES); there is no retry or resume of a failed download;
// no signature beyond sha256 is checked (k3s publishes none).
package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/progress"
)

// Environment variables the builder honours for offline builds.
const (
	EnvBinary       = "K3S_BINARY"
	EnvBinarySHA256 = "K3S_BINARY_SHA256"
	EnvAirgapImages = "K3S_AIRGAP_IMAGES"
)

// DefaultBaseURL is where k3s publishes its releases.
const DefaultBaseURL = "https://github.com/k3s-io/k3s/releases/download"

// DefaultCacheDir is the cache, relative to the repository top.
const DefaultCacheDir = ".cache/k3s"

// Pin is the `k3s:` section of versions.yaml.
type Pin struct {
	// Version is the upstream release tag, e.g. v1.33.7+k3s1.
	Version string `yaml:"version"`
	// URL is the release base URL; empty means DefaultBaseURL.
	URL string `yaml:"url,omitempty"`
	// SHA256 maps an arch (amd64, arm64, arm) to the published sha256 of its
	// binary. An arch without an entry trusts the published list alone.
	SHA256 map[string]string `yaml:"sha256,omitempty"`
}

// LoadPin reads the `k3s:` section of a versions file. Other sections are
// ignored (other packages own them); unknown keys inside `k3s:` are errors.
func LoadPin(path string) (Pin, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Pin{}, fmt.Errorf("read versions file: %w", err)
	}
	return ParsePin(path, data)
}

// ParsePin is LoadPin on bytes already read; name is used in errors.
func ParsePin(name string, data []byte) (Pin, error) {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return Pin{}, fmt.Errorf("%s: %w", name, err)
	}
	node, ok := top["k3s"]
	if !ok {
		return Pin{}, fmt.Errorf("%s: no k3s: section", name)
	}
	// Re-encode the section so a strict decoder can reject unknown keys.
	raw, err := yaml.Marshal(&node)
	if err != nil {
		return Pin{}, fmt.Errorf("%s: k3s: %w", name, err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	var p Pin
	if err := dec.Decode(&p); err != nil {
		return Pin{}, fmt.Errorf("%s: k3s section (line %d): %w", name, node.Line, err)
	}
	if p.Version == "" {
		return Pin{}, fmt.Errorf("%s:%d: k3s.version is empty", name, node.Line)
	}
	for arch, sum := range p.SHA256 {
		if _, err := AssetName(arch); err != nil {
			return Pin{}, fmt.Errorf("%s: k3s.sha256: %w", name, err)
		}
		if !isSHA256(sum) {
			return Pin{}, fmt.Errorf("%s: k3s.sha256.%s: %q is not a sha256 (64 hex digits)", name, arch, sum)
		}
		p.SHA256[arch] = strings.ToLower(sum)
	}
	return p, nil
}

// AssetName is the release asset of the k3s binary for arch.
func AssetName(arch string) (string, error) {
	switch arch {
	case "amd64":
		return "k3s", nil
	case "arm64":
		return "k3s-arm64", nil
	case "arm":
		return "k3s-armhf", nil
	}
	return "", fmt.Errorf("unknown k3s arch %q (known: amd64, arm64, arm)", arch)
}

// ChecksumListName is the release asset listing the sha256 of arch's assets.
func ChecksumListName(arch string) (string, error) {
	if _, err := AssetName(arch); err != nil {
		return "", err
	}
	return "sha256sum-" + arch + ".txt", nil
}

// Options says what to fetch and from where.
type Options struct {
	Pin  Pin
	Arch string // amd64, arm64 or arm
	// CacheDir holds downloads; empty means DefaultCacheDir.
	CacheDir string
	// Client is used for downloads; nil means http.DefaultClient.
	Client *http.Client
	// Getenv reads K3S_BINARY and friends; nil means os.Getenv.
	Getenv func(string) string
	// Log reports what was chosen, and a download's progress (bytes,
	// rate); nil is quiet.
	Log *progress.Log
	// AllowStandin lets K3S_BINARY be the k3s stand-in of test/k3s-standin.
	// Only the test image builder sets it; a release build refuses the
	// stand-in.
	AllowStandin bool
}

// StandinMarker is a string the test stand-in carries in its binary and
// prints; Fetch recognises the stand-in by it.
const StandinMarker = "TEST STAND-IN, NOT k3s"

// Source says where a Result came from.
type Source string

const (
	FromLocal    Source = "local"    // K3S_BINARY
	FromCache    Source = "cache"    // .cache/k3s
	FromDownload Source = "download" // the release URL
)

// Result is a verified k3s binary on the build host.
type Result struct {
	Version string
	Arch    string
	// Binary is the path of the verified binary (in the cache, or
	// K3S_BINARY itself).
	Binary string
	SHA256 string
	Source Source
	// AirgapImages is K3S_AIRGAP_IMAGES when given, else empty.
	AirgapImages string
	// Standin is true when the binary is the test stand-in (only with
	// Options.AllowStandin).
	Standin bool
}

// Fetch returns a verified k3s binary for opt.Arch; see the package doc for
// the order of sources.
func Fetch(ctx context.Context, opt Options) (Result, error) {
	asset, err := AssetName(opt.Arch)
	if err != nil {
		return Result{}, err
	}
	getenv := opt.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	logf := opt.Log.Printf
	res := Result{Version: opt.Pin.Version, Arch: opt.Arch}
	if p := getenv(EnvAirgapImages); p != "" {
		if _, err := os.Stat(p); err != nil {
			return Result{}, fmt.Errorf("%s: %w", EnvAirgapImages, err)
		}
		res.AirgapImages = p
	}
	pinned := opt.Pin.SHA256[opt.Arch]

	if local := getenv(EnvBinary); local != "" {
		sum, err := fileSHA256(local)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", EnvBinary, err)
		}
		switch want := strings.ToLower(getenv(EnvBinarySHA256)); {
		case want != "" && want != sum:
			return Result{}, fmt.Errorf("%s=%s has sha256 %s, but %s says %s: refusing it", EnvBinary, local, sum, EnvBinarySHA256, want)
		case want == "" && pinned != "" && pinned != sum:
			return Result{}, fmt.Errorf("%s=%s has sha256 %s, but versions.yaml pins k3s %s %s at %s: refusing it (set %s=%s to use this build deliberately)",
				EnvBinary, local, sum, opt.Pin.Version, opt.Arch, pinned, EnvBinarySHA256, sum)
		case want == "" && pinned == "":
			logf("k3s: %s=%s not pinned for %s, using it unverified (sha256 %s)", EnvBinary, local, opt.Arch, sum)
		}
		standin, err := fileContains(local, StandinMarker)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", EnvBinary, err)
		}
		if standin && !opt.AllowStandin {
			return Result{}, fmt.Errorf("%s=%s is the k3s stand-in for tests, not k3s: refusing to put it into an image", EnvBinary, local)
		}
		res.Binary, res.SHA256, res.Source, res.Standin = local, sum, FromLocal, standin
		if standin {
			logf("k3s: %s=%s is the TEST STAND-IN, not k3s (allowed for a test image)", EnvBinary, local)
		}
		logf("k3s: using %s=%s (sha256 %s)", EnvBinary, local, sum)
		return res, nil
	}

	cacheDir := opt.CacheDir
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	dir := filepath.Join(cacheDir, opt.Pin.Version, opt.Arch)
	cached := filepath.Join(dir, asset)
	if sum, ok := cacheHit(dir, cached, asset, pinned); ok {
		res.Binary, res.SHA256, res.Source = cached, sum, FromCache
		logf("k3s: cached %s (sha256 %s)", cached, sum)
		return res, nil
	}

	base := strings.TrimSuffix(opt.Pin.URL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	client := opt.Client
	if client == nil {
		client = http.DefaultClient
	}
	listName, _ := ChecksumListName(opt.Arch)
	listURL := base + "/" + opt.Pin.Version + "/" + listName
	list, err := get(ctx, client, listURL)
	if err != nil {
		return Result{}, offline(listURL, err)
	}
	published, err := LookupSHA256(list, asset)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", listURL, err)
	}
	if pinned != "" && pinned != published {
		return Result{}, fmt.Errorf("k3s %s %s: published list %s says sha256 %s but versions.yaml pins %s: refusing (the release changed, or the pin is wrong)",
			opt.Pin.Version, opt.Arch, listURL, published, pinned)
	}
	if pinned == "" {
		logf("k3s: no sha256 pinned for %s, trusting the published list %s", opt.Arch, listURL)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("k3s cache: %w", err)
	}
	binURL := base + "/" + opt.Pin.Version + "/" + asset
	sum, err := download(ctx, client, binURL, cached, opt.Log)
	if err != nil {
		return Result{}, err
	}
	if sum != published {
		os.Remove(cached)
		return Result{}, fmt.Errorf("k3s %s %s: downloaded %s has sha256 %s, but %s says %s: refusing it (corrupt or tampered download)",
			opt.Pin.Version, opt.Arch, binURL, sum, listURL, published)
	}
	if err := os.WriteFile(filepath.Join(dir, listName), list, 0o644); err != nil {
		return Result{}, fmt.Errorf("k3s cache: %w", err)
	}
	res.Binary, res.SHA256, res.Source = cached, sum, FromDownload
	logf("k3s: downloaded %s (sha256 %s)", binURL, sum)
	return res, nil
}

// LookupSHA256 finds asset's sha256 in a published sha256sum list
// ("<hex>  <name>" per line, name optionally prefixed by "*" or "./").
func LookupSHA256(list []byte, asset string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(string(list)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(f[1], "*"), "./")
		if name == asset {
			if !isSHA256(f[0]) {
				return "", fmt.Errorf("entry for %s: %q is not a sha256", asset, f[0])
			}
			return strings.ToLower(f[0]), nil
		}
	}
	return "", fmt.Errorf("no sha256 listed for %s", asset)
}

// offline wraps a failure to reach the release page with the way out.
func offline(url string, err error) error {
	return fmt.Errorf("cannot download k3s from %s: %w\n"+
		"  this machine may have no internet access: build offline with %s=/path/to/k3s "+
		"(the release binary; optionally %s=/path/to/k3s-airgap-images-<arch>.tar.zst)",
		url, err, EnvBinary, EnvAirgapImages)
}

func get(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	body, _, err := open(ctx, client, url)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return data, nil
}

// open returns the body of url and its length (-1: not given).
func open(ctx context.Context, client *http.Client, url string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("HTTP %s", resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

// download writes url to dst (via a temporary file in the same directory,
// renamed only when complete), reporting progress on log, and returns its
// sha256.
func download(ctx context.Context, client *http.Client, url, dst string, log *progress.Log) (string, error) {
	body, size, err := open(ctx, client, url)
	if err != nil {
		return "", offline(url, err)
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".k3s-*")
	if err != nil {
		return "", fmt.Errorf("k3s cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	t := log.Transfer("k3s: download "+url, size)
	if _, err := io.Copy(io.MultiWriter(tmp, h, t), body); err != nil {
		tmp.Close()
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	t.Done()
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", fmt.Errorf("k3s cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("k3s cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("k3s cache: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cacheHit reports whether the cached binary matches the pin, or, with no
// pin, the published list cached next to it.
func cacheHit(dir, cached, asset, pinned string) (string, bool) {
	sum, err := fileSHA256(cached)
	if err != nil {
		return "", false
	}
	want := pinned
	if want == "" {
		listName := "sha256sum-" + filepath.Base(dir) + ".txt"
		list, err := os.ReadFile(filepath.Join(dir, listName))
		if err != nil {
			return "", false
		}
		if want, err = LookupSHA256(list, asset); err != nil {
			return "", false
		}
	}
	return sum, sum == want
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileContains reports whether the file holds marker, reading it in
// overlapping chunks.
func fileContains(path, marker string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	m := []byte(marker)
	buf := make([]byte, 1<<20)
	keep := 0
	for {
		n, err := f.Read(buf[keep:])
		if bytes.Contains(buf[:keep+n], m) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
		total := keep + n
		keep = min(len(m)-1, total)
		copy(buf, buf[total-keep:total])
	}
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
