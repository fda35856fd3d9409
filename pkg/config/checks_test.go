package config

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"io/fs"
	"testing"

	"github.com/kestrel-os/kestrel/pkg/config/sha512crypt"
)

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func TestDecodeContentEveryEncoding(t *testing.T) {
	const plain = "hello\nworld\n"
	b64 := base64.StdEncoding.EncodeToString([]byte(plain))
	gzb64 := base64.StdEncoding.EncodeToString([]byte(gz(plain)))
	for _, tc := range []struct{ enc, content string }{
		{"", plain}, {"none", plain}, {"text/plain", plain},
		{"b64", b64}, {"base64", b64}, {"BASE64", b64},
		{"b64", b64[:8] + "\n  " + b64[8:]}, // folded base64
		{"gz", gz(plain)}, {"gzip", gz(plain)},
		{"gz+b64", gzb64}, {"gzip+base64", gzb64}, {"gz+base64", gzb64}, {"gzip+b64", gzb64},
	} {
		got, err := DecodeContent(tc.enc, tc.content)
		if err != nil || string(got) != plain {
			t.Errorf("encoding %q: %q, %v", tc.enc, got, err)
		}
	}
	for _, tc := range []struct{ enc, content string }{
		{"b64", "!!"}, {"gz", "not gzip"}, {"gz+b64", b64}, {"rot13", "x"},
	} {
		if _, err := DecodeContent(tc.enc, tc.content); err == nil {
			t.Errorf("encoding %q content %q: no error", tc.enc, tc.content)
		}
	}
	// In a document, every spelling validates.
	for _, enc := range []string{"b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"} {
		c := gzb64
		if enc == "b64" || enc == "base64" {
			c = b64
		}
		cfg := parseOne(t, "write_files:\n- path: /x\n  encoding: "+enc+"\n  content: "+c+"\n")
		if d, err := cfg.WriteFiles[0].Data(); err != nil || string(d) != plain {
			t.Errorf("%s: %q %v", enc, d, err)
		}
	}
}

func TestModesAndOwners(t *testing.T) {
	for in, want := range map[string]fs.FileMode{
		"0644": 0o644, "644": 0o644, "0o600": 0o600, "0755": 0o755, "4755": 0o755 | fs.ModeSetuid, "1777": 0o777 | fs.ModeSticky, "2750": 0o750 | fs.ModeSetgid,
	} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%s) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "rw-r--r--", "0999", "77777", "-1"} {
		if _, err := ParseMode(bad); err == nil {
			t.Errorf("ParseMode(%q) accepted", bad)
		}
	}
	if m, _ := (File{}).Mode(); m != 0o644 {
		t.Errorf("default mode %v", m)
	}
	for owner, want := range map[string][2]string{"": {"root", "root"}, "kestrel": {"kestrel", ""}, "1000:100": {"1000", "100"}} {
		u, g := File{Owner: owner}.OwnerParts()
		if u != want[0] || g != want[1] {
			t.Errorf("owner %q: %s %s", owner, u, g)
		}
	}
}

func TestHashPasswords(t *testing.T) {
	c := parseOne(t, "kestrel:\n  password: plain\n  users: [{name: ops, password: other}, {name: dev, password: '$6$abc$def'}, {name: nopw}]\n")
	if err := c.HashPasswords(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if !sha512crypt.Verify("plain", c.Kestrel.Password) || !sha512crypt.Verify("other", c.Kestrel.Users[0].Password) {
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
