package config

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// runCheck applies a check tag to one scalar value.
func runCheck(check, v string) error {
	if rest, ok := strings.CutPrefix(check, "enum="); ok {
		for _, e := range strings.Split(rest, "|") {
			if v == e {
				return nil
			}
		}
		if s := suggest(v, strings.Split(rest, "|")); s != "" {
			return fmt.Errorf("%q is not one of %s; did you mean %q?", v, strings.ReplaceAll(rest, "|", ", "), s)
		}
		return fmt.Errorf("%q is not one of %s", v, strings.ReplaceAll(rest, "|", ", "))
	}
	switch check {
	case "encoding":
		if _, err := normalizeEncoding(v); err != nil {
			return err
		}
	case "octal":
		if _, err := ParseMode(v); err != nil {
			return err
		}
	case "cidr":
		if _, _, err := net.ParseCIDR(v); err != nil {
			return fmt.Errorf("%q is not an address in CIDR notation (192.0.2.10/24)", v)
		}
	case "ip":
		if net.ParseIP(v) == nil {
			return fmt.Errorf("%q is not an IP address", v)
		}
	case "url":
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Scheme != "file") {
			return fmt.Errorf("%q is not an absolute URL", v)
		}
		switch u.Scheme {
		case "http", "https", "file":
		default:
			return fmt.Errorf("%q: only http, https and file URLs are supported", v)
		}
	case "absolute":
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q is not an absolute path", v)
		}
	case "hostname":
		if !hostnameRE.MatchString(v) || len(v) > 253 {
			return fmt.Errorf("%q is not a valid host name (letters, digits, '-' and '.', labels of at most 63 characters)", v)
		}
	case "username":
		if !usernameRE.MatchString(v) {
			return fmt.Errorf("%q is not a valid user name (lower case letters, digits, '_' and '-', at most 32 characters)", v)
		}
		if v == DefaultUser || v == "root" {
			return fmt.Errorf("%q is a built-in user; use the top-level ssh_authorized_keys and kestrel.password for %s", v, DefaultUser)
		}
	case "timezone":
		if v != "UTC" && (!tzRE.MatchString(v) || strings.Contains(v, "..")) {
			return fmt.Errorf("%q is not a time zone name (Area/City, as in the tz database)", v)
		}
	case "taint":
		if !taintRE.MatchString(v) {
			return fmt.Errorf("%q is not a taint (key[=value]:NoSchedule|PreferNoSchedule|NoExecute)", v)
		}
	case "mtu":
		if n, _ := strconv.Atoi(v); n < 68 || n > 65535 {
			return fmt.Errorf("MTU %s is outside 68-65535", v)
		}
	case "vlanid":
		if n, _ := strconv.Atoi(v); n < 1 || n > 4094 {
			return fmt.Errorf("VLAN id %s is outside 1-4094", v)
		}
	default:
		return fmt.Errorf("internal: unknown check %q", check)
	}
	return nil
}

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	tzRE       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)
	taintRE    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?(=[-A-Za-z0-9_.]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$`)
)

// Encodings of write_files content, by canonical name.
const (
	EncodingNone     = ""
	EncodingBase64   = "b64"
	EncodingGzip     = "gz"
	EncodingGzBase64 = "gz+b64"
)

// normalizeEncoding maps every spelling k3OS (and cloud-init) accepts to
// one canonical name.
func normalizeEncoding(e string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(e)) {
	case "", "text/plain", "plain", "none":
		return EncodingNone, nil
	case "b64", "base64":
		return EncodingBase64, nil
	case "gz", "gzip":
		return EncodingGzip, nil
	case "gz+b64", "gzip+base64", "gz+base64", "gzip+b64":
		return EncodingGzBase64, nil
	}
	return "", fmt.Errorf("unknown encoding %q (use b64, base64, gz, gzip, gz+b64, gzip+base64, gz+base64 or gzip+b64)", e)
}

// DecodeContent decodes write_files content given its encoding.
func DecodeContent(encoding, content string) ([]byte, error) {
	enc, err := normalizeEncoding(encoding)
	if err != nil {
		return nil, err
	}
	data := []byte(content)
	if enc == EncodingBase64 || enc == EncodingGzBase64 {
		// Base64 in YAML is often folded over lines; whitespace is ignored.
		clean := strings.Join(strings.Fields(content), "")
		if data, err = base64.StdEncoding.DecodeString(clean); err != nil {
			return nil, fmt.Errorf("content is not valid base64: %w", err)
		}
	}
	if enc == EncodingGzip || enc == EncodingGzBase64 {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("content is not gzip data: %w", err)
		}
		// 256 MiB is far beyond any sane config file and bounds a gzip bomb.
		const limit = 256 << 20
		out, err := io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, fmt.Errorf("content: gunzip: %w", err)
		}
		if len(out) > limit {
			return nil, fmt.Errorf("content: gunzipped data larger than %d bytes", limit)
		}
		data = out
	}
	return data, nil
}

// Data returns the file's decoded content.
func (f File) Data() ([]byte, error) { return DecodeContent(f.Encoding, f.Content) }

// Mode returns the file's permissions (default 0644).
func (f File) Mode() (fs.FileMode, error) {
	if f.Permissions == "" {
		return 0o644, nil
	}
	return ParseMode(f.Permissions)
}

// ParseMode parses an octal mode string ("0644", "644", "0o755", "4755").
func ParseMode(s string) (fs.FileMode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O")
	n, err := strconv.ParseUint(t, 8, 32)
	if err != nil || n > 0o7777 || t == "" {
		return 0, fmt.Errorf("%q is not an octal mode (like \"0644\")", s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// Owner splits the file's owner into user and group ("root", "0:0",
// "kestrel:wheel"); an empty group means the user's primary group.
func (f File) OwnerParts() (user, group string) {
	if f.Owner == "" {
		return "root", "root"
	}
	u, g, _ := strings.Cut(f.Owner, ":")
	return u, g
}

func (f File) check() []problem {
	if _, err := f.Data(); err != nil {
		return []problem{{"content", err.Error()}}
	}
	return nil
}

func (m Mount) check() []problem {
	n := 0
	for _, s := range []string{m.Device, m.Label, m.UUID} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return []problem{{"", "give exactly one of device, label, uuid"}}
	}
	return nil
}

func (i Interface) check() []problem {
	if i.VLAN != nil && i.Bond != nil {
		return []problem{{"", "an interface is a VLAN or a bond, not both"}}
	}
	return nil
}
