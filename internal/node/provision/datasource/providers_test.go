package datasource

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/config"
)

// digitalOceanServer is laid out like the droplet metadata service.
func digitalOceanServer(t *testing.T, userData string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata/v1/id", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("2756294")) })
	ud := ""
	if userData != "" {
		ud = `,"user_data":` + jsonString(userData)
	}
	mux.HandleFunc("GET /metadata/v1.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"droplet_id":2756294,"hostname":"sample-droplet","region":"nyc3",` +
			`"public_keys":["ssh-ed25519 AAAAdo1 a@b","ssh-rsa AAAAdo2\n"],"vendor_data":"#cloud-config\n"` + ud + `}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// hetznerServer is laid out like the Hetzner Cloud metadata service; the
// userdata endpoint answers empty without user data.
func hetznerServer(t *testing.T, userData string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hetzner/v1/metadata", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("availability-zone: fsn1-dc14\nhostname: hetzner-host\ninstance-id: 123456\n" +
			"local-ipv4: ''\npublic-ipv4: 1.2.3.4\npublic-keys:\n- ssh-ed25519 AAAAhz1 ops@x\n- ssh-ed25519 AAAAhz2 dev@y\nregion: eu-central\n"))
	})
	mux.HandleFunc("GET /hetzner/v1/userdata", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(userData)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// gceServer is laid out like the GCE metadata server: every request needs
// Metadata-Flavor: Google, missing attributes are 404s.
func gceServer(t *testing.T, userData string, blockProject bool) *httptest.Server {
	mux := http.NewServeMux()
	attrs := map[string]string{
		"instance/id":                     "4520031799277581759",
		"instance/hostname":               "vm-1.c.proj.internal",
		"instance/attributes/ssh-keys":    "alice:ssh-ed25519 AAAAgi1 alice@laptop\n\nbob:ssh-rsa AAAAgi2 google-ssh {\"userName\":\"bob\"}\nno-colon-line\n",
		"project/attributes/ssh-keys":     "carol:ssh-ed25519 AAAAgp1 carol\n",
		"instance/attributes/other-thing": "x",
	}
	if userData != "" {
		attrs["instance/attributes/user-data"] = userData
	}
	if blockProject {
		attrs["instance/attributes/block-project-ssh-keys"] = "TRUE"
	}
	mux.HandleFunc("GET /computeMetadata/v1/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		v, ok := attrs[strings.TrimPrefix(r.URL.Path, "/computeMetadata/v1/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(v))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// packetServer is laid out like the Equinix Metal metadata service.
func packetServer(t *testing.T, userData string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"id":"2885032e-61a8-4786-bd26-7b2e2e6ba1ea","hostname":"metal-1","plan":"c3.small.x86",` +
			`"facility":"ewr1","tags":[],"ssh_keys":["ssh-rsa AAAApk1 ops","ssh-ed25519 AAAApk2"],"network":{"interfaces":[]}}`))
	})
	if userData != "" {
		mux.HandleFunc("GET /userdata", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(userData)) })
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// vultrServer is laid out like the Vultr metadata service.
func vultrServer(t *testing.T, userData string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"bgp":{"ipv4":{"my-address":""}},"hostname":"vultr-guest","instanceid":"42872224",` +
			`"instance-v2-id":"29bea708-2e6e-480a-90ad-0e6b5d5ad62f","interfaces":[],` +
			`"public-keys":["ssh-ed25519 AAAAvu1 ops\n",""],"region":{"regioncode":"AMS"}}`))
	})
	if userData != "" {
		mux.HandleFunc("GET /latest/user-data", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(userData)) })
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func TestProviders(t *testing.T) {
	const ud = "#cloud-config\nhostname: from-user-data\n"
	tests := []struct {
		name   string
		src    func(base string) Source
		server func(t *testing.T, userData string) *httptest.Server
		prefix string
		want   Meta
	}{
		{
			name:   "digitalocean",
			src:    func(b string) Source { return &DigitalOcean{BaseURL: b} },
			server: digitalOceanServer,
			prefix: "digitalocean:",
			want:   Meta{InstanceID: "2756294", Hostname: "sample-droplet", PublicKeys: []string{"ssh-ed25519 AAAAdo1 a@b", "ssh-rsa AAAAdo2"}},
		},
		{
			name:   "hetzner",
			src:    func(b string) Source { return &Hetzner{BaseURL: b} },
			server: hetznerServer,
			prefix: "hetzner:",
			want:   Meta{InstanceID: "123456", Hostname: "hetzner-host", PublicKeys: []string{"ssh-ed25519 AAAAhz1 ops@x", "ssh-ed25519 AAAAhz2 dev@y"}},
		},
		{
			name:   "gcp",
			src:    func(b string) Source { return &GCE{BaseURL: b} },
			server: func(t *testing.T, u string) *httptest.Server { return gceServer(t, u, false) },
			prefix: "gcp:",
			want: Meta{InstanceID: "4520031799277581759", Hostname: "vm-1.c.proj.internal", PublicKeys: []string{
				"ssh-ed25519 AAAAgi1 alice@laptop", `ssh-rsa AAAAgi2 google-ssh {"userName":"bob"}`, "ssh-ed25519 AAAAgp1 carol"}},
		},
		{
			name:   "packet",
			src:    func(b string) Source { return &Packet{BaseURL: b} },
			server: packetServer,
			prefix: "packet:",
			want:   Meta{InstanceID: "2885032e-61a8-4786-bd26-7b2e2e6ba1ea", Hostname: "metal-1", PublicKeys: []string{"ssh-rsa AAAApk1 ops", "ssh-ed25519 AAAApk2"}},
		},
		{
			name:   "vultr",
			src:    func(b string) Source { return &Vultr{BaseURL: b} },
			server: vultrServer,
			prefix: "vultr:",
			want:   Meta{InstanceID: "29bea708-2e6e-480a-90ad-0e6b5d5ad62f", Hostname: "vultr-guest", PublicKeys: []string{"ssh-ed25519 AAAAvu1 ops"}},
		},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.server(t, ud)
			src := tc.src(srv.URL)
			if src.Name() != tc.prefix+srv.URL {
				t.Errorf("name %s", src.Name())
			}
			if ok, err := src.Probe(ctx); !ok || err != nil {
				t.Fatalf("probe: %v %v", ok, err)
			}
			d, err := src.Fetch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.Meta, tc.want) || string(d.UserData) != ud || d.Name != src.Name() {
				t.Fatalf("got %+v %q", d.Meta, d.UserData)
			}

			// Missing user data is fine.
			d, err = tc.src(tc.server(t, "").URL).Fetch(ctx)
			if err != nil || d.UserData != nil || !reflect.DeepEqual(d.Meta, tc.want) {
				t.Fatalf("no user data: %v %+v %q", err, d, d.UserData)
			}

			// Nothing listening, or another cloud's service: probe says no.
			if ok, _ := tc.src("http://127.0.0.1:1").Probe(ctx); ok {
				t.Error("probe of nothing said yes")
			}
			if ok, _ := tc.src(metadataServer(t, ud).URL).Probe(ctx); ok {
				t.Error("probe of an EC2/OpenStack service said yes")
			}
		})
	}
}

func TestGCEHeaderAndBlockProjectKeys(t *testing.T) {
	srv := gceServer(t, "", true)
	// The server refuses requests without the header (so does the real one).
	resp, err := http.Get(srv.URL + "/computeMetadata/v1/instance/id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no header: %s", resp.Status)
	}
	d, err := (&GCE{BaseURL: srv.URL}).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ssh-ed25519 AAAAgi1 alice@laptop", `ssh-rsa AAAAgi2 google-ssh {"userName":"bob"}`}
	if !reflect.DeepEqual(d.Meta.PublicKeys, want) {
		t.Fatalf("block-project-ssh-keys: %q", d.Meta.PublicKeys)
	}
	if (&GCE{}).Name() != "gcp:"+DefaultGCEMetadataURL || (&Packet{}).Name() != "packet:"+DefaultPacketMetadataURL ||
		(&DigitalOcean{}).Name() != "digitalocean:"+DefaultMetadataURL || (&Hetzner{}).Name() != "hetzner:"+DefaultMetadataURL ||
		(&Vultr{}).Name() != "vultr:"+DefaultMetadataURL {
		t.Error("default URLs")
	}
}

// TestVultrLegacyID: without instance-v2-id the legacy instanceid is the
// instance id; with neither the document is not Vultr's.
func TestVultrLegacyID(t *testing.T) {
	doc := `{"hostname":"h","instanceid":"42"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1.json" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(doc))
	}))
	defer srv.Close()
	v := &Vultr{BaseURL: srv.URL}
	d, err := v.Fetch(context.Background())
	if err != nil || d.Meta.InstanceID != "42" || d.UserData != nil {
		t.Fatalf("%v %+v", err, d)
	}
	doc = `{"hostname":"h"}`
	if ok, _ := v.Probe(context.Background()); ok {
		t.Error("probe said yes without an instance id")
	}
}

func TestDigitalOceanArrayDocument(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"droplet_id":7,"hostname":"d","public_keys":[],"user_data":""}]`))
	}))
	defer srv.Close()
	d, err := (&DigitalOcean{BaseURL: srv.URL}).Fetch(context.Background())
	if err != nil || d.Meta.InstanceID != "7" || d.Meta.Hostname != "d" || d.UserData != nil || d.Meta.PublicKeys != nil {
		t.Fatalf("%v %+v", err, d)
	}
}

// TestNetworkProviders runs the providers through Network by name: the
// user data and the meta-data documents are added, in order.
func TestNetworkProviders(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  *httptest.Server
		host string
	}{
		{"digitalocean", digitalOceanServer(t, "kestrel: {timezone: UTC}\n"), "sample-droplet"},
		{"hetzner", hetznerServer(t, "kestrel: {timezone: UTC}\n"), "hetzner-host"},
		{"gcp", gceServer(t, "kestrel: {timezone: UTC}\n", false), "vm-1.c.proj.internal"},
		{"packet", packetServer(t, "kestrel: {timezone: UTC}\n"), "metal-1"},
		{"vultr", vultrServer(t, "kestrel: {timezone: UTC}\n"), "vultr-guest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &config.Sources{}
			cfg := &config.Config{}
			cfg.Kestrel.DataSources = []string{tc.name}
			raws := Network(context.Background(), s, cfg, Env{MetadataURL: tc.srv.URL})
			r, err := s.Merge()
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Errors) != 0 || len(raws) != 2 {
				t.Fatalf("errors %v, %d documents", r.Errors, len(raws))
			}
			if r.Config.Hostname != tc.host || r.Config.Kestrel.Timezone != "UTC" || len(r.Config.SSHAuthorizedKeys) == 0 {
				t.Fatalf("%+v", r.Config)
			}
		})
	}
}
