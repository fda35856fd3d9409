// Package sshkeys turns ssh_authorized_keys entries into public keys:
// literal keys pass through, "github:USER" and "gitlab:USER" fetch the
// keys those services publish at /USER.keys, and an http(s) URL fetches a
// file in authorized_keys format.
//
// The base URLs and the HTTP client are fields, so tests use httptest and
// a node behind a proxy uses a client with that proxy.
//
// Limits: fetched keys are not cached (an offline boot keeps the previous
// authorized_keys only if the caller does not overwrite it on failure);
// bodies over 1 MiB are refused; no file:// URLs; keys with options
// (command=...) are dropped from fetched lists.
package sshkeys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Default base URLs.
const (
	GitHub = "https://github.com"
	GitLab = "https://gitlab.com"
)

const maxBody = 1 << 20

// Resolver fetches remote keys.
type Resolver struct {
	Client    *http.Client // default: a client with a 30s timeout
	GitHubURL string       // default GitHub
	GitLabURL string       // default GitLab
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
			errs = append(errs, fmt.Errorf("ssh_authorized_keys[%d] %s: %w", i, e, err))
			continue
		}
		for _, k := range got {
			add(k)
		}
	}
	return keys, errors.Join(errs...)
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
		if _, err := url.ParseRequestURI(entry); err != nil {
			return nil, fmt.Errorf("invalid URL: %w", err)
		}
		u = entry
	}
	client := r.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("GET %s: more than %d bytes", u, maxBody)
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
		return nil, fmt.Errorf("GET %s: no public keys in the answer", u)
	}
	return keys, nil
}
