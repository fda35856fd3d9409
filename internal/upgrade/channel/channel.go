// Package channel resolves a Plan's spec.channel URL to a version the way
// rancher's system-upgrade-controller does: one GET that does not follow
// redirects, carrying X-SUC-Cluster-ID and X-SUC-Latest-Version; a 302's
// Location path ends in the version, a 2xx means the URL's own last path
// element is the version; `+` becomes `-`.
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
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
)

// Header names sent to the channel server.
const (
	HeaderClusterID     = "X-SUC-Cluster-ID"
	HeaderLatestVersion = "X-SUC-Latest-Version"
)

// ErrMalformed means the server answered, but not with a usable version.
var ErrMalformed = errors.New("malformed channel response")

// Resolver resolves channels. The zero value uses a client with a 30 s
// timeout.
type Resolver struct {
	Client *http.Client
}

// Resolve GETs channelURL and returns the version it points at.
func (r *Resolver) Resolve(ctx context.Context, channelURL, latestVersion, clusterID string) (string, error) {
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
		u, err := url.Parse(channelURL)
		if err != nil {
			return "", fmt.Errorf("channel %s: %w", channelURL, err)
		}
		v = path.Base(u.Path)
	default:
		return "", fmt.Errorf("channel %s: unexpected response %s %s", channelURL, resp.Proto, resp.Status)
	}
	if v == "" || v == "." || v == "/" || strings.ContainsAny(v, " \t\r\n") {
		return "", fmt.Errorf("channel %s: no version in %q: %w", channelURL, v, ErrMalformed)
	}
	return plan.MungeVersion(v), nil
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
