// Package datasource fetches config from outside the image: a NoCloud
// CIDATA disk, cloud metadata services (EC2, OpenStack, DigitalOcean,
// Hetzner Cloud, Google Compute Engine, Equinix Metal, Vultr) and a config
// URL. Every source has the same small shape, probe then fetch, and yields
// raw documents that package config validates and merges like any file.
//
// Order (after the local files of config.LoadLocal):
//
//  6. NoCloud (Local): always probed, it is a local disk and cheap to
//     look for; meta-data first (instance-id, local-hostname, public
//     keys), then user-data.
//  7. metadata services (Network), only those named in
//     kestrel.data_sources (aws/ec2, openstack, digitalocean, hetzner,
//     gcp, packet, vultr), in the order named; probing a metadata
//     address on a LAN without one would only cost boot time.
//  8. kestrel.config_url (Network), as set by everything before it; a
//     config_url inside the fetched document is not followed.
//
// Limits: user-data must be YAML (a "#cloud-config" header is optional);
// shell scripts, MIME multipart and gzip-compressed user data are
// reported as errors, not run. NoCloud's network-config is not read (use
// kestrel.network). scaleway is an accepted name (k3OS configs) but not
// implemented, and reported so: Scaleway serves user data only to
// requests from a privileged source port (below 1024, so that only root
// can read it), which Kestrel's plain HTTP client does not bind.
// Public keys from metadata form a list like any other, so they replace
// ssh_authorized_keys from earlier sources (later user-data can replace
// them again).
package datasource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/config"
)

// Source is one place config can come from.
type Source interface {
	// Name labels the source in provenance and errors (nocloud:/dev/sr0).
	Name() string
	// Probe reports quickly whether the source is present. An error means
	// it could not be told.
	Probe(ctx context.Context) (bool, error)
	// Fetch reads the source; called only after Probe said yes.
	Fetch(ctx context.Context) (*Data, error)
}

// Data is what a source gives.
type Data struct {
	Name     string
	UserData []byte // nil when there is none
	Meta     Meta
}

// Meta is the instance metadata Kestrel uses.
type Meta struct {
	InstanceID string
	Hostname   string
	PublicKeys []string
}

// Raw is one config document as fetched, kept so that `kestrel config
// show` can replay it (see SaveCache).
type Raw struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// Raws turns fetched data into documents: meta-data first (hostname and
// keys, only when given), then user-data.
func (d *Data) Raws() []Raw {
	var out []Raw
	m := config.Config{Hostname: d.Meta.Hostname, SSHAuthorizedKeys: d.Meta.PublicKeys}
	if m.Hostname != "" || len(m.SSHAuthorizedKeys) > 0 {
		b, _ := yaml.Marshal(m) // a Config with two plain fields always marshals
		out = append(out, Raw{Name: d.Name + "/meta-data", Data: b})
	}
	if len(d.UserData) > 0 {
		out = append(out, Raw{Name: d.Name + "/user-data", Data: d.UserData})
	}
	return out
}

// Add validates raw documents and adds them to s in order; a bad one is
// skipped with its error recorded in s.
func Add(s *config.Sources, raws []Raw) {
	for _, r := range raws {
		if err := checkUserData(r.Data); err != nil {
			s.AddError(&config.Error{Pos: config.Pos{File: r.Name, Line: 1, Col: 1}, Problem: err.Error()})
			continue
		}
		s.Add(r.Name, r.Data)
	}
}

// checkUserData rejects the user-data formats Kestrel does not run.
func checkUserData(b []byte) error {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return errors.New("gzip-compressed user data is not supported; give #cloud-config YAML")
	case len(b) >= 2 && string(b[:2]) == "#!":
		return errors.New("user data is a script; Kestrel only reads #cloud-config YAML (use run_cmd)")
	case len(b) >= 13 && string(b[:13]) == "Content-Type:":
		return errors.New("MIME multipart user data is not supported; give #cloud-config YAML")
	}
	return nil
}

// DefaultCache is where stage 2 keeps the fetched documents.
const DefaultCache = "/run/kestrel/datasources.json"

// Cache is what stage 2 keeps of the datasources it read: the documents,
// so that `kestrel config show` can replay them without fetching again,
// and the problems met fetching them (unreachable services, bad user
// data), for `kestrel status`.
type Cache struct {
	Documents []Raw    `json:"documents"`
	Errors    []string `json:"errors,omitempty"`
}

// SaveCache writes the cache to path (on tmpfs). Secrets are in it, so it
// is written 0600, atomically.
func SaveCache(path string, c Cache) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode datasource cache: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("datasource cache: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write datasource cache: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write datasource cache: %w", err)
	}
	return nil
}

// LoadCache reads what SaveCache wrote; a missing file is an empty cache.
func LoadCache(path string) (Cache, error) {
	var c Cache
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read datasource cache: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read datasource cache %s: %w", path, err)
	}
	return c, nil
}

// gather probes and fetches one source. Absent sources give nothing and
// no error unless required.
func gather(ctx context.Context, src Source, required bool) ([]Raw, error) {
	ok, err := src.Probe(ctx)
	if err != nil {
		return nil, fmt.Errorf("datasource %s: probe: %w", src.Name(), err)
	}
	if !ok {
		if required {
			return nil, fmt.Errorf("datasource %s: not found", src.Name())
		}
		return nil, nil
	}
	d, err := src.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("datasource %s: %w", src.Name(), err)
	}
	return d.Raws(), nil
}
