// Package urlfetch downloads what a node takes orders from over the
// network, kestrel.config_url and ssh_authorized_keys URLs, where a
// changed byte means someone else's run_cmd or SSH key:
//
//   - https only; plain http needs the caller's explicit opt-in
//     (the config's kestrel.allow_insecure_http), and even then a redirect
//     from https to http is refused;
//   - an optional "#sha256=HEX" fragment pins the body's SHA-256 (the
//     fragment is never sent to the server). Pinning does not lift the
//     https rule: a config travels with its secrets (the k3s token), so
//     http stays an opt-in even when the content is pinned;
//   - the body is read up to a size bound and no further.
//
// Limits: the certificate check is the client's (the system roots by
// default); no other fragment is understood, so a URL with one is
// refused rather than half-honoured; no file:// URLs (callers handle
// their own local schemes).
package urlfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Options say how Get fetches.
type Options struct {
	Client    *http.Client // default http.DefaultClient; its redirect policy is wrapped
	AllowHTTP bool         // accept plain http URLs (and redirects to them from http)
	MaxBody   int64        // bytes; default 16 MiB
}

// OptIn names the config key that sets Options.AllowHTTP, for messages.
const OptIn = "kestrel.allow_insecure_http"

// ErrNotFound is a 404 answer.
var ErrNotFound = errors.New("404 not found")

// Get fetches raw (an http or https URL, with an optional #sha256=HEX) and
// returns its body. Errors name the URL without its password.
func Get(ctx context.Context, raw string, o Options) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	name := u.Redacted()
	var want []byte
	if u.Fragment != "" {
		hexsum, ok := strings.CutPrefix(u.Fragment, "sha256=")
		if want, err = hex.DecodeString(hexsum); !ok || err != nil || len(want) != sha256.Size {
			return nil, fmt.Errorf("%s: fragment #%s: only #sha256= followed by 64 hex digits is understood", name, u.Fragment)
		}
		u.Fragment = ""
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && o.AllowHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("%s: plain http: anyone on the network path could change it; use https, or set %s: true (not recommended)", name, OptIn)
	default:
		return nil, fmt.Errorf("%s: only https URLs are supported", name)
	}
	client := http.DefaultClient
	if o.Client != nil {
		client = o.Client
	}
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" && (via[0].URL.Scheme == "https" || !o.AllowHTTP) {
			return fmt.Errorf("redirect from %s to %s refused: not https", via[len(via)-1].URL.Redacted(), req.URL.Redacted())
		}
		if client.CheckRedirect != nil {
			return client.CheckRedirect(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("GET %s: %w", name, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", name, resp.Status)
	}
	max := o.MaxBody
	if max <= 0 {
		max = 16 << 20
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", name, err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("GET %s: more than %d bytes", name, max)
	}
	if want != nil {
		if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
			return nil, fmt.Errorf("GET %s: sha256 %x, want %x: refused", name, got, want)
		}
	}
	return body, nil
}
