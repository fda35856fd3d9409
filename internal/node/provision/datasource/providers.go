package datasource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"
)

// The provider sources below have the shape of EC2 and OpenStack: a base
// URL (a link-local default, httptest in tests), a client, a quick probe
// and a fetch. The endpoint facts each relies on are written next to it,
// with where they were checked.

// metaBase returns base without a trailing slash, or def when empty.
func metaBase(base, def string) string {
	if base == "" {
		return def
	}
	return strings.TrimRight(base, "/")
}

// optional turns a 404, or an empty answer, into nil: missing user data
// is not an error.
func optional(b []byte, err error) ([]byte, error) {
	if errors.Is(err, errNotFound) || len(b) == 0 {
		return nil, nil
	}
	return b, err
}

// trimKeys trims each key and drops empty ones.
func trimKeys(in []string) []string {
	var out []string
	for _, k := range in {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// DigitalOcean reads the droplet metadata service.
//
// Endpoint (DigitalOcean Metadata API reference, "Droplet Properties",
// docs.digitalocean.com/reference/api/metadata/droplet-properties/):
// GET http://169.254.169.254/metadata/v1.json returns all metadata at
// once as JSON: droplet_id (a number), hostname, public_keys (a list of
// OpenSSH lines), user_data (a string, absent or empty without user
// data). No header is required. The probe reads /metadata/v1/id.
type DigitalOcean struct {
	BaseURL string       // default DefaultMetadataURL
	Client  *http.Client // default http.DefaultClient
}

func (o *DigitalOcean) base() string { return metaBase(o.BaseURL, DefaultMetadataURL) }

// Name implements Source.
func (o *DigitalOcean) Name() string { return "digitalocean:" + o.base() }

// Probe implements Source.
func (o *DigitalOcean) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := httpGetter{client: o.Client}.get(ctx, o.base()+"/metadata/v1/id")
	return err == nil, nil
}

// Fetch implements Source.
func (o *DigitalOcean) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	b, err := httpGetter{client: o.Client}.get(ctx, o.base()+"/metadata/v1.json")
	if err != nil {
		return nil, err
	}
	var md struct {
		DropletID  json.Number `json:"droplet_id"`
		Hostname   string      `json:"hostname"`
		PublicKeys []string    `json:"public_keys"`
		UserData   *string     `json:"user_data"`
	}
	// The reference shows the document inside a one-element array; the
	// service and DigitalOcean's Go client use a bare object. Take both.
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "[") {
		var arr []json.RawMessage
		if err := json.Unmarshal(b, &arr); err != nil || len(arr) != 1 {
			return nil, fmt.Errorf("metadata/v1.json: not one droplet document")
		}
		b = arr[0]
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("metadata/v1.json: %w", err)
	}
	d := &Data{Name: o.Name(), Meta: Meta{
		InstanceID: md.DropletID.String(),
		Hostname:   strings.TrimSpace(md.Hostname),
		PublicKeys: trimKeys(md.PublicKeys),
	}}
	if md.UserData != nil && *md.UserData != "" {
		d.UserData = []byte(*md.UserData)
	}
	return d, nil
}

// Hetzner reads the Hetzner Cloud metadata service.
//
// Endpoints (cloud-init's DataSourceHetzner, base
// http://169.254.169.254/hetzner/v1, and its tests' sample metadata):
// GET /hetzner/v1/metadata is a YAML document with instance-id (a
// number), hostname and public-keys (a list of OpenSSH lines); GET
// /hetzner/v1/userdata is the user data as given, empty when none. No
// header is required.
type Hetzner struct {
	BaseURL string       // default DefaultMetadataURL
	Client  *http.Client // default http.DefaultClient
}

func (h *Hetzner) base() string { return metaBase(h.BaseURL, DefaultMetadataURL) + "/hetzner/v1" }

// Name implements Source.
func (h *Hetzner) Name() string { return "hetzner:" + metaBase(h.BaseURL, DefaultMetadataURL) }

// Probe implements Source.
func (h *Hetzner) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := httpGetter{client: h.Client}.get(ctx, h.base()+"/metadata")
	return err == nil, nil
}

// Fetch implements Source.
func (h *Hetzner) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g := httpGetter{client: h.Client}
	b, err := g.get(ctx, h.base()+"/metadata")
	if err != nil {
		return nil, err
	}
	var md struct {
		InstanceID string   `yaml:"instance-id"`
		Hostname   string   `yaml:"hostname"`
		PublicKeys []string `yaml:"public-keys"`
	}
	if err := yaml.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("hetzner/v1/metadata: %w", err)
	}
	d := &Data{Name: h.Name(), Meta: Meta{
		InstanceID: strings.TrimSpace(md.InstanceID),
		Hostname:   strings.TrimSpace(md.Hostname),
		PublicKeys: trimKeys(md.PublicKeys),
	}}
	if d.UserData, err = optional(g.get(ctx, h.base()+"/userdata")); err != nil {
		return nil, err
	}
	return d, nil
}

// DefaultGCEMetadataURL is the Google Compute Engine metadata server.
const DefaultGCEMetadataURL = "http://metadata.google.internal"

// GCE reads the Google Compute Engine metadata server.
//
// Endpoints (Google's metadata overview, as wrapped by
// cloud.google.com/go/compute/metadata; cloud-init's GCE datasource doc):
// base http://metadata.google.internal/computeMetadata/v1/, every request
// with the header "Metadata-Flavor: Google" (the server refuses requests
// without it). instance/id, instance/hostname (a FQDN), and the custom
// attributes instance/attributes/user-data, instance/attributes/ssh-keys
// and project/attributes/ssh-keys: one key a line as "user:KEY", of which
// only KEY is kept. Project keys are skipped when the instance attribute
// block-project-ssh-keys is "true". Missing attributes are 404s.
type GCE struct {
	BaseURL string       // default DefaultGCEMetadataURL
	Client  *http.Client // default http.DefaultClient
}

func (c *GCE) base() string { return metaBase(c.BaseURL, DefaultGCEMetadataURL) }

// Name implements Source.
func (c *GCE) Name() string { return "gcp:" + c.base() }

func (c *GCE) getter() httpGetter {
	return httpGetter{client: c.Client, header: http.Header{"Metadata-Flavor": {"Google"}}}
}

// Probe implements Source.
func (c *GCE) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := c.getter().get(ctx, c.base()+"/computeMetadata/v1/instance/id")
	return err == nil, nil
}

// Fetch implements Source.
func (c *GCE) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g := c.getter()
	md := c.base() + "/computeMetadata/v1/"
	id, err := g.get(ctx, md+"instance/id")
	if err != nil {
		return nil, err
	}
	d := &Data{Name: c.Name(), Meta: Meta{InstanceID: strings.TrimSpace(string(id))}}
	h, err := optional(g.get(ctx, md+"instance/hostname"))
	if err != nil {
		return nil, err
	}
	d.Meta.Hostname = strings.TrimSpace(string(h))
	paths := []string{"instance/attributes/ssh-keys"}
	block, err := optional(g.get(ctx, md+"instance/attributes/block-project-ssh-keys"))
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(strings.TrimSpace(string(block)), "true") {
		paths = append(paths, "project/attributes/ssh-keys")
	}
	for _, p := range paths {
		b, err := optional(g.get(ctx, md+p))
		if err != nil {
			return nil, err
		}
		d.Meta.PublicKeys = append(d.Meta.PublicKeys, gceKeys(string(b))...)
	}
	if d.UserData, err = optional(g.get(ctx, md+"instance/attributes/user-data")); err != nil {
		return nil, err
	}
	return d, nil
}

// gceKeys parses GCE ssh-keys lines, "user:ssh-ed25519 AAAA... comment",
// into the key parts.
func gceKeys(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		_, key, ok := strings.Cut(line, ":")
		if !ok {
			continue // not user:key
		}
		if key = strings.TrimSpace(key); key != "" {
			out = append(out, key)
		}
	}
	return out
}

// DefaultPacketMetadataURL is the Equinix Metal (formerly Packet) metadata
// service.
const DefaultPacketMetadataURL = "https://metadata.platformequinix.com"

// Packet reads the Equinix Metal (formerly Packet) metadata service.
//
// Endpoints (Equinix Metal docs, "Metadata" and "User Data" under
// deploy.equinix.com/developers/docs/metal/server-metadata/): GET
// https://metadata.platformequinix.com/metadata is one JSON document with
// id (the device UUID), hostname and ssh_keys (a list of OpenSSH lines);
// GET /userdata is the user data as given. The service answers only the
// device itself, found by source address; no header is required. It is
// reached over the network, not a link-local address, so the probe may
// take the whole ProbeTimeout on other clouds.
type Packet struct {
	BaseURL string       // default DefaultPacketMetadataURL
	Client  *http.Client // default http.DefaultClient
}

func (p *Packet) base() string { return metaBase(p.BaseURL, DefaultPacketMetadataURL) }

// Name implements Source.
func (p *Packet) Name() string { return "packet:" + p.base() }

// Probe implements Source.
func (p *Packet) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	b, err := httpGetter{client: p.Client}.get(ctx, p.base()+"/metadata")
	if err != nil {
		return false, nil
	}
	var md struct {
		ID string `json:"id"`
	}
	return json.Unmarshal(b, &md) == nil && md.ID != "", nil
}

// Fetch implements Source.
func (p *Packet) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g := httpGetter{client: p.Client}
	b, err := g.get(ctx, p.base()+"/metadata")
	if err != nil {
		return nil, err
	}
	var md struct {
		ID       string   `json:"id"`
		Hostname string   `json:"hostname"`
		SSHKeys  []string `json:"ssh_keys"`
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	d := &Data{Name: p.Name(), Meta: Meta{
		InstanceID: strings.TrimSpace(md.ID),
		Hostname:   strings.TrimSpace(md.Hostname),
		PublicKeys: trimKeys(md.SSHKeys),
	}}
	if d.UserData, err = optional(g.get(ctx, p.base()+"/userdata")); err != nil {
		return nil, err
	}
	return d, nil
}

// Vultr reads the Vultr metadata service.
//
// Endpoints (Vultr's Metadata API page, www.vultr.com/metadata/, and its
// "Manage Instance User Data with the Vultr Metadata API" guide;
// cloud-init's Vultr datasource and tests): GET
// http://169.254.169.254/v1.json is the whole metadata tree as JSON, with
// hostname, instance-v2-id (the API's UUID; instanceid is the legacy id,
// used only when there is no v2 id) and public-keys (a list of OpenSSH
// lines); GET /latest/user-data is the user data, decoded as given. No
// authentication is required (cloud-init sends a Metadata-Token header,
// which Vultr's page does not ask for; it is sent here too, harmlessly).
type Vultr struct {
	BaseURL string       // default DefaultMetadataURL
	Client  *http.Client // default http.DefaultClient
}

func (v *Vultr) base() string { return metaBase(v.BaseURL, DefaultMetadataURL) }

// Name implements Source.
func (v *Vultr) Name() string { return "vultr:" + v.base() }

func (v *Vultr) getter() httpGetter {
	return httpGetter{client: v.Client, header: http.Header{"Metadata-Token": {"vultr"}}}
}

type vultrMeta struct {
	Hostname     string   `json:"hostname"`
	InstanceID   string   `json:"instanceid"`
	InstanceV2ID string   `json:"instance-v2-id"`
	PublicKeys   []string `json:"public-keys"`
}

func (v *Vultr) meta(ctx context.Context) (vultrMeta, error) {
	var md vultrMeta
	b, err := v.getter().get(ctx, v.base()+"/v1.json")
	if err != nil {
		return md, err
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return md, fmt.Errorf("v1.json: %w", err)
	}
	if md.InstanceV2ID == "" {
		md.InstanceV2ID = md.InstanceID
	}
	if md.InstanceV2ID == "" {
		return md, errors.New("v1.json: no instance-v2-id or instanceid")
	}
	return md, nil
}

// Probe implements Source.
func (v *Vultr) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := v.meta(ctx)
	return err == nil, nil
}

// Fetch implements Source.
func (v *Vultr) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	md, err := v.meta(ctx)
	if err != nil {
		return nil, err
	}
	d := &Data{Name: v.Name(), Meta: Meta{
		InstanceID: strings.TrimSpace(md.InstanceV2ID),
		Hostname:   strings.TrimSpace(md.Hostname),
		PublicKeys: trimKeys(md.PublicKeys),
	}}
	if d.UserData, err = optional(v.getter().get(ctx, v.base()+"/latest/user-data")); err != nil {
		return nil, err
	}
	return d, nil
}
