package config

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"io/fs"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

// TestEveryEncoding: every write_files encoding spelling validates in a
// document and decodes to the same bytes; bad content is refused.
func TestEveryEncoding(t *testing.T) {
	const plain = "hello\nworld\n"
	b64 := base64.StdEncoding.EncodeToString([]byte(plain))
	gzb64 := base64.StdEncoding.EncodeToString([]byte(gz(plain)))
	folded := "|\n    " + b64[:8] + "\n    " + b64[8:]
	for _, tc := range []struct{ enc, content string }{
		{`""`, `"hello\nworld\n"`}, {"none", `"hello\nworld\n"`}, {"text/plain", `"hello\nworld\n"`},
		{"b64", b64}, {"base64", b64}, {"BASE64", b64}, {"b64", folded},
		{"gz+b64", gzb64}, {"gzip+base64", gzb64}, {"gz+base64", gzb64}, {"gzip+b64", gzb64},
	} {
		cfg := parseOne(t, "write_files:\n- path: /x\n  encoding: "+tc.enc+"\n  content: "+tc.content+"\n")
		if d, err := cfg.WriteFiles[0].Data(); err != nil || string(d) != plain {
			t.Errorf("%s: %q %v", tc.enc, d, err)
		}
	}
	// gz and gzip carry binary content; only the decoder sees it raw.
	for _, enc := range []string{"gz", "gzip"} {
		if d, err := (File{Encoding: enc, Content: gz(plain)}).Data(); err != nil || string(d) != plain {
			t.Errorf("%s: %q %v", enc, d, err)
		}
	}
	for _, tc := range []struct{ enc, content string }{
		{"b64", "!!"}, {"gz", "not gzip"}, {"gz+b64", b64}, {"rot13", "x"},
	} {
		if _, err := (File{Encoding: tc.enc, Content: tc.content}).Data(); err == nil {
			t.Errorf("encoding %q content %q: no error", tc.enc, tc.content)
		}
	}
}

func TestModes(t *testing.T) {
	for in, want := range map[string]fs.FileMode{
		"": 0o644, "0644": 0o644, "644": 0o644, "0o600": 0o600, "0755": 0o755, "4755": 0o755 | fs.ModeSetuid, "1777": 0o777 | fs.ModeSticky, "2750": 0o750 | fs.ModeSetgid,
	} {
		if got, err := (File{Permissions: in}).Mode(); err != nil || got != want {
			t.Errorf("mode %q = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"rw-r--r--", "0999", "77777", "-1"} {
		if _, err := parseDoc("write_files: [{path: /x, permissions: '" + bad + "'}]"); err == nil {
			t.Errorf("permissions %q accepted", bad)
		}
	}
}

func parseDoc(s string) (*Document, error) { return Parse("t.yaml", []byte(s)) }

func TestHashPasswords(t *testing.T) {
	c := parseOne(t, "kestrel:\n  password: plain\n  users: [{name: ops, password: other}, {name: dev, password: '$6$abc$def'}, {name: nopw}]\n")
	if err := c.HashPasswords(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if shacrypt.Verify(c.Kestrel.Password, "plain") != nil || shacrypt.Verify(c.Kestrel.Users[0].Password, "other") != nil || !strings.HasPrefix(c.Kestrel.Password, "$6$") {
		t.Fatalf("not hashed: %+v", c.Kestrel)
	}
	if c.Kestrel.Users[1].Password != "$6$abc$def" || c.Kestrel.Users[2].Password != "" {
		t.Fatalf("hash or empty changed: %+v", c.Kestrel.Users)
	}
}

func TestSuggest(t *testing.T) {
	for key, want := range map[string]string{
		"hostnme": "hostname", "Hostname": "hostname", "rnu_cmd": "run_cmd", "ssh_authorised_keys": "ssh_authorized_keys", "x": "", "kestrelz": "kestrel",
	} {
		if got := suggest(key, fieldNames(configType)); got != want {
			t.Errorf("suggest(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestDurationCheck(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{{"90s", true}, {"5m", true}, {"1h30m", true}, {"0s", false}, {"-1m", false}, {"90", false}, {"soon", false}} {
		if err := runCheck("duration", tc.v); (err == nil) != tc.ok {
			t.Errorf("duration %q: %v, want ok=%v", tc.v, err, tc.ok)
		}
	}
}
