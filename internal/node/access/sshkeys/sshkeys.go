// Package sshkeys turns ssh_authorized_keys entries into public keys:
// literal keys pass through, "github:USER" and "gitlab:USER" fetch the
// keys those services publish at /USER.keys, and an https URL fetches a
// file in authorized_keys format (package urlfetch: plain http only with
// Resolver.AllowHTTP, an optional #sha256= pin, no https-to-http
// redirect).
//
// The base URLs and the HTTP client are fields, so tests use httptest and
// a node behind a proxy uses a client with that proxy.
//
// Fetched keys are kept, by entry, in Resolver.CachePath (on the state
// partition): an entry that fails to fetch later (server down, no
// network) yields the keys it gave last time, with the error still
// reported, and Cached gives them without the network at boot, so a
// failing source never takes access away.
//
// Limits: the cache keeps an entry's keys until it fetches again (an
// entry dropped from the config is ignored, not deleted); bodies over
// 1 MiB are refused; no file:// URLs; keys with options
// (command=...) are dropped from fetched lists.
package sshkeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kestrel-os/kestrel/internal/node/net/urlfetch"
	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// redacted is u without its password, for messages.
func redacted(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return u
}

// Default base URLs.
const (
	GitHub = "https://github.com"
	GitLab = "https://gitlab.com"
)

const maxBody = 1 << 20

// DefaultCache is where the node keeps fetched keys: /var is on the state
// partition.
const DefaultCache = "/var/lib/kestrel/ssh-keys.json"

// Resolver fetches remote keys.
type Resolver struct {
	Client    *http.Client // default: a client with a 30s timeout
	GitHubURL string       // default GitHub
	GitLabURL string       // default GitLab
	// CachePath keeps the last keys fetched per entry (JSON, 0600); ""
	// keeps none. DefaultCache on the node.
	CachePath string
	// AllowHTTP accepts plain http URLs (the config's
	// kestrel.allow_insecure_http): anyone on the path can then add keys.
	AllowHTTP bool
}

var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// IsRemote says whether an entry needs the network to resolve.
func IsRemote(entry string) bool {
	e := strings.TrimSpace(entry)
	return strings.HasPrefix(e, "github:") || strings.HasPrefix(e, "gitlab:") ||
		strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "http://")
}

// Resolve returns the keys of every entry, in order, without duplicates.
// An entry that fails is reported (naming it and its index) and the keys
// of the others are still returned.
func (r *Resolver) Resolve(ctx context.Context, entries []string) ([]string, error) {
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	cache := r.loadCache()
	changed := false
	var errs []error
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !IsRemote(e) {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(e)); err != nil {
				errs = append(errs, fmt.Errorf("ssh_authorized_keys[%d]: not a public key, github:USER, gitlab:USER or URL: %w", i, err))
				continue
			}
			add(e)
			continue
		}
		got, err := r.fetch(ctx, e)
		if err != nil {
			if old := cache[e]; len(old) > 0 {
				err = fmt.Errorf("%w (kept the %d keys it gave last time)", err, len(old))
				got = old
			}
			errs = append(errs, fmt.Errorf("ssh_authorized_keys[%d] %s: %w", i, redacted(e), err))
		} else if !slices.Equal(cache[e], got) {
			cache[e] = got
			changed = true
		}
		for _, k := range got {
			add(k)
		}
	}
	if changed && r.CachePath != "" {
		if err := saveCache(r.CachePath, cache); err != nil {
			errs = append(errs, err)
		}
	}
	return keys, errors.Join(errs...)
}

// Cached returns the keys the remote entries among entries gave when
// last fetched, without the network (for the boot phase).
func (r *Resolver) Cached(entries []string) []string {
	cache := r.loadCache()
	var keys []string
	for _, e := range entries {
		if e = strings.TrimSpace(e); IsRemote(e) {
			keys = append(keys, cache[e]...)
		}
	}
	return keys
}

// cacheFile is the JSON in CachePath.
type cacheFile struct {
	Entries map[string][]string `json:"entries"`
}

// loadCache reads CachePath; a missing or unreadable cache is empty (it
// only ever adds keys that were once fetched, so losing it is safe).
func (r *Resolver) loadCache() map[string][]string {
	var c cacheFile
	if r.CachePath != "" {
		if b, err := os.ReadFile(r.CachePath); err == nil {
			json.Unmarshal(b, &c)
		}
	}
	if c.Entries == nil {
		c.Entries = map[string][]string{}
	}
	return c.Entries
}

func saveCache(path string, entries map[string][]string) error {
	b, err := json.MarshalIndent(cacheFile{Entries: entries}, "", "  ")
	if err != nil {
		return fmt.Errorf("ssh key cache: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o600, atomicfile.NoChown, atomicfile.NoChown); err != nil {
		return fmt.Errorf("ssh key cache: %w", err)
	}
	return nil
}

func (r *Resolver) fetch(ctx context.Context, entry string) ([]string, error) {
	var u string
	switch {
	case strings.HasPrefix(entry, "github:"), strings.HasPrefix(entry, "gitlab:"):
		service, user, _ := strings.Cut(entry, ":")
		user = strings.TrimSpace(user)
		if !userName.MatchString(user) {
			return nil, fmt.Errorf("invalid user name %q", user)
		}
		base := r.GitHubURL
		if base == "" {
			base = GitHub
		}
		if service == "gitlab" {
			base = r.GitLabURL
			if base == "" {
				base = GitLab
			}
		}
		u = strings.TrimRight(base, "/") + "/" + url.PathEscape(user) + ".keys"
	default:
		u = entry
	}
	client := r.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	body, err := urlfetch.Get(ctx, u, urlfetch.Options{Client: client, AllowHTTP: r.AllowHTTP, MaxBody: maxBody})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		_, _, options, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil || len(options) > 0 {
			continue
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("GET %s: no public keys in the answer", redacted(u))
	}
	return keys, nil
}
