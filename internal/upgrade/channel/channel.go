// Package channel resolves a Plan's spec.channel URL to a version the way
// rancher's system-upgrade-controller does: one GET that does not follow
// redirects, carrying X-SUC-Cluster-ID and X-SUC-Latest-Version; a 302's
// Location path ends in the version, a 2xx means the URL's own last path
// element is the version; `+` becomes `-`.
//
// Unlike SUC, a channel must be https: whoever answers the channel picks
// the version every node upgrades to, so a plain-http channel lets anyone
// on the path choose it. A Plan opts into http with the annotation
// AnnotationAllowHTTP (a lab's local channel server). The version, which
// becomes the upgrade image's tag, must be a valid image tag (OCI
// distribution spec: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}); anything else is
// ErrMalformed, so a channel cannot smuggle a digest, a path or another
// repository into the image reference.
//
// Limits: no authentication, no caching beyond what the caller keeps, and
// the response body is never read (only status and Location matter).
// Retrying with backoff is the caller's job; Backoff computes the delay.
package channel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
)

// Header names sent to the channel server.
const (
	HeaderClusterID     = "X-SUC-Cluster-ID"
	HeaderLatestVersion = "X-SUC-Latest-Version"
)

// AnnotationAllowHTTP set to "true" on a Plan lets its channel be http.
const AnnotationAllowHTTP = "kestrel.io/allow-http-channel"

// ErrInsecure means the channel is not https and its Plan did not opt in.
var ErrInsecure = errors.New("channel is not https")

// tagRE is an image tag as the OCI distribution spec defines it. Written
// here rather than imported: go-containerregistry's check accepts a
// leading '.' or '-', which registries refuse, and the spec's one line
// does not warrant another module.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ErrMalformed means the server answered, but not with a usable version.
var ErrMalformed = errors.New("malformed channel response")

// Resolver resolves channels. The zero value uses a client with a 30 s
// timeout.
type Resolver struct {
	Client *http.Client
}

// ResolvePlan resolves p's spec.channel: https, or http when p carries
// AnnotationAllowHTTP: "true".
func (r *Resolver) ResolvePlan(ctx context.Context, p *plan.Plan, clusterID string) (string, error) {
	return r.resolve(ctx, p.Spec.Channel, p.Status.LatestVersion, clusterID, p.Annotations[AnnotationAllowHTTP] == "true")
}

// Resolve GETs an https channelURL and returns the version it points at.
func (r *Resolver) Resolve(ctx context.Context, channelURL, latestVersion, clusterID string) (string, error) {
	return r.resolve(ctx, channelURL, latestVersion, clusterID, false)
}

func (r *Resolver) resolve(ctx context.Context, channelURL, latestVersion, clusterID string, allowHTTP bool) (string, error) {
	u, err := url.Parse(channelURL)
	if err != nil {
		return "", fmt.Errorf("channel %s: %w", channelURL, err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	case u.Scheme == "http":
		return "", fmt.Errorf("channel %s: %w: anyone on the path could pick the version; use https, or annotate the Plan %s: \"true\"", channelURL, ErrInsecure, AnnotationAllowHTTP)
	default:
		return "", fmt.Errorf("channel %s: %w: scheme %q", channelURL, ErrInsecure, u.Scheme)
	}
	hc := http.Client{Timeout: 30 * time.Second}
	if r != nil && r.Client != nil {
		hc = *r.Client
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, channelURL, nil)
	if err != nil {
		return "", fmt.Errorf("channel %s: %w", channelURL, err)
	}
	if clusterID != "" {
		req.Header.Set(HeaderClusterID, clusterID)
	}
	if latestVersion != "" {
		req.Header.Set(HeaderLatestVersion, latestVersion)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("channel %s: %w", channelURL, err)
	}
	defer resp.Body.Close()
	var v string
	switch {
	case resp.StatusCode == http.StatusFound:
		loc, err := resp.Location()
		if err != nil {
			return "", fmt.Errorf("channel %s: 302 without usable Location: %w: %w", channelURL, ErrMalformed, err)
		}
		v = path.Base(loc.Path)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		v = path.Base(u.Path)
	default:
		return "", fmt.Errorf("channel %s: unexpected response %s %s", channelURL, resp.Proto, resp.Status)
	}
	if v == "" || v == "." || v == "/" || strings.ContainsAny(v, " \t\r\n") {
		return "", fmt.Errorf("channel %s: no version in %.80q: %w", channelURL, v, ErrMalformed)
	}
	tag := plan.MungeVersion(v)
	if !tagRE.MatchString(tag) {
		return "", fmt.Errorf("channel %s: version %.80q is not a valid image tag: %w", channelURL, v, ErrMalformed)
	}
	return tag, nil
}

// Backoff returns the delay before retry number n (1-based) after a
// failure: exponential from base, capped at max.
func Backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
