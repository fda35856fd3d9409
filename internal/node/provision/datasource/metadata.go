package datasource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// DefaultMetadataURL is where EC2 and OpenStack serve instance metadata.
const DefaultMetadataURL = "http://169.254.169.254"

// Timeouts: a probe must be quick (it runs on every boot that names the
// source); a fetch may be slower.
const (
	ProbeTimeout = 2 * time.Second
	FetchTimeout = 15 * time.Second
	maxBody      = 16 << 20 // bound on any metadata answer
)

// errNotFound is a 404: the item does not exist (no user data).
var errNotFound = errors.New("not found")

type httpGetter struct {
	client *http.Client
	header http.Header
}

func (g httpGetter) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range g.header {
		req.Header[k] = v
	}
	c := g.client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("GET %s: %w", url, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("GET %s: answer larger than %d bytes", url, maxBody)
	}
	return b, nil
}

// EC2 reads the EC2 instance metadata service (IMDSv2 with a session
// token when the service offers one, IMDSv1 otherwise): instance-id,
// local-hostname, public-keys and user-data.
type EC2 struct {
	BaseURL string       // default DefaultMetadataURL; tests use httptest
	Client  *http.Client // default http.DefaultClient
}

func (e *EC2) base() string {
	if e.BaseURL == "" {
		return DefaultMetadataURL
	}
	return strings.TrimRight(e.BaseURL, "/")
}

// Name implements Source.
func (e *EC2) Name() string { return "ec2:" + e.base() }

func (e *EC2) getter(ctx context.Context) httpGetter {
	g := httpGetter{client: e.Client, header: http.Header{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, e.base()+"/latest/api/token", nil)
	if err != nil {
		return g
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "300")
	c := e.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return g
	}
	defer resp.Body.Close()
	tok, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK && len(tok) > 0 {
		g.header.Set("X-aws-ec2-metadata-token", string(tok))
	}
	return g
}

// Probe implements Source.
func (e *EC2) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := e.getter(ctx).get(ctx, e.base()+"/latest/meta-data/instance-id")
	return err == nil, nil
}

// Fetch implements Source.
func (e *EC2) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g := e.getter(ctx)
	md := e.base() + "/latest/meta-data/"
	d := &Data{Name: e.Name()}
	id, err := g.get(ctx, md+"instance-id")
	if err != nil {
		return nil, err
	}
	d.Meta.InstanceID = strings.TrimSpace(string(id))
	if h, err := g.get(ctx, md+"local-hostname"); err == nil {
		d.Meta.Hostname = strings.TrimSpace(string(h))
	} else if !errors.Is(err, errNotFound) {
		return nil, err
	}
	// public-keys/ lists "0=name" lines; each key is at public-keys/0/openssh-key.
	list, err := g.get(ctx, md+"public-keys/")
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		idx, _, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		k, err := g.get(ctx, md+"public-keys/"+idx+"/openssh-key")
		if err != nil {
			return nil, err
		}
		d.Meta.PublicKeys = append(d.Meta.PublicKeys, strings.TrimSpace(string(k)))
	}
	ud, err := g.get(ctx, e.base()+"/latest/user-data")
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	d.UserData = ud
	return d, nil
}

// OpenStack reads the OpenStack metadata service:
// openstack/latest/meta_data.json (uuid, hostname, public_keys) and
// openstack/latest/user_data.
type OpenStack struct {
	BaseURL string
	Client  *http.Client
}

func (o *OpenStack) base() string {
	if o.BaseURL == "" {
		return DefaultMetadataURL
	}
	return strings.TrimRight(o.BaseURL, "/")
}

// Name implements Source.
func (o *OpenStack) Name() string { return "openstack:" + o.base() }

// Probe implements Source.
func (o *OpenStack) Probe(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := httpGetter{client: o.Client}.get(ctx, o.base()+"/openstack/latest/meta_data.json")
	return err == nil, nil
}

// Fetch implements Source.
func (o *OpenStack) Fetch(ctx context.Context) (*Data, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g := httpGetter{client: o.Client}
	b, err := g.get(ctx, o.base()+"/openstack/latest/meta_data.json")
	if err != nil {
		return nil, err
	}
	var md struct {
		UUID       string            `json:"uuid"`
		Hostname   string            `json:"hostname"`
		Name       string            `json:"name"`
		PublicKeys map[string]string `json:"public_keys"`
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("meta_data.json: %w", err)
	}
	d := &Data{Name: o.Name(), Meta: Meta{InstanceID: md.UUID, Hostname: md.Hostname}}
	if d.Meta.Hostname == "" {
		d.Meta.Hostname = md.Name
	}
	names := make([]string, 0, len(md.PublicKeys))
	for n := range md.PublicKeys {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d.Meta.PublicKeys = append(d.Meta.PublicKeys, strings.TrimSpace(md.PublicKeys[n]))
	}
	ud, err := g.get(ctx, o.base()+"/openstack/latest/user_data")
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	d.UserData = ud
	return d, nil
}
