package datasource

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/net/urlfetch"
)

// Local probes NoCloud and adds what it finds to s (source 6). It returns
// the documents added, for SaveCache.
func Local(ctx context.Context, s *config.Sources, nc *NoCloud) []Raw {
	if nc == nil {
		return nil
	}
	raws, err := gather(ctx, nc, false)
	if err != nil {
		s.AddError(err)
		return nil
	}
	Add(s, raws)
	return raws
}

// Env says where the network sources are; tests point it at httptest
// servers and temporary directories.
type Env struct {
	// MetadataURL is the base URL of every metadata service; empty means
	// each one's own default (DefaultMetadataURL, DefaultGCEMetadataURL,
	// DefaultPacketMetadataURL).
	MetadataURL string
	Client      *http.Client // default http.DefaultClient
	// AllowHTTP lets config_url be plain http (kestrel.allow_insecure_http,
	// also taken from the config Network is given).
	AllowHTTP bool
	// FileRoot is prefixed to file:// config URLs ("/" on the device; the
	// root being assembled in stage 1; a temporary directory in tests).
	FileRoot string
}

// Network adds the metadata services named in cfg.Kestrel.DataSources
// (source 7) and then cfg.Kestrel.ConfigURL (source 8) to s. cfg is the
// config merged from the sources before these. It returns the documents
// added, for SaveCache.
func Network(ctx context.Context, s *config.Sources, cfg *config.Config, env Env) []Raw {
	var all []Raw
	for _, name := range cfg.Kestrel.DataSources {
		if name == "cdrom" || name == "nocloud" {
			continue // read by Local, always
		}
		newSource, ok := metadataSources[name]
		if !ok {
			s.AddError(fmt.Errorf("datasource %s: not implemented in Kestrel; skipped", name))
			continue
		}
		src := newSource(env.MetadataURL, env.Client)
		raws, err := gather(ctx, src, true)
		if err != nil {
			s.AddError(err)
			continue
		}
		Add(s, raws)
		all = append(all, raws...)
	}
	// config_url as set by everything so far, including what was just
	// fetched.
	u, insecure := cfg.Kestrel.ConfigURL, cfg.Kestrel.AllowInsecureHTTP
	if r, err := s.Merge(); err == nil {
		insecure = r.Config.Kestrel.AllowInsecureHTTP
		if r.Config.Kestrel.ConfigURL != "" {
			u = r.Config.Kestrel.ConfigURL
		}
	}
	env.AllowHTTP = env.AllowHTTP || insecure
	if u != "" {
		b, err := FetchURL(ctx, u, env)
		if err != nil {
			s.AddError(fmt.Errorf("config_url: %w", err))
		} else {
			raw := Raw{Name: u, Data: b}
			Add(s, []Raw{raw})
			all = append(all, raw)
		}
	}
	return all
}

// metadataSources are the metadata services by their kestrel.data_sources
// name; base "" means the service's own address.
var metadataSources = map[string]func(base string, c *http.Client) Source{
	"aws":          func(b string, c *http.Client) Source { return &EC2{BaseURL: b, Client: c} },
	"ec2":          func(b string, c *http.Client) Source { return &EC2{BaseURL: b, Client: c} },
	"openstack":    func(b string, c *http.Client) Source { return &OpenStack{BaseURL: b, Client: c} },
	"digitalocean": func(b string, c *http.Client) Source { return &DigitalOcean{BaseURL: b, Client: c} },
	"hetzner":      func(b string, c *http.Client) Source { return &Hetzner{BaseURL: b, Client: c} },
	"gcp":          func(b string, c *http.Client) Source { return &GCE{BaseURL: b, Client: c} },
	"packet":       func(b string, c *http.Client) Source { return &Packet{BaseURL: b, Client: c} },
	"vultr":        func(b string, c *http.Client) Source { return &Vultr{BaseURL: b, Client: c} },
}

// FetchURL reads an https or file URL; http only with env.AllowHTTP. An
// https URL may pin its content with #sha256=HEX (package urlfetch).
// File URLs are read under env.FileRoot.
func FetchURL(ctx context.Context, raw string, env Env) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https":
		ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
		defer cancel()
		return urlfetch.Get(ctx, raw, urlfetch.Options{Client: env.Client, AllowHTTP: env.AllowHTTP, MaxBody: maxBody})
	case "file":
		p := u.Path
		if env.FileRoot != "" {
			p = filepath.Join(env.FileRoot, filepath.Clean("/"+p))
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", raw, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%q: only http, https and file URLs are supported", raw)
}
