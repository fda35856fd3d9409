package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/osfiles/hostname"
	"github.com/kestrel-os/kestrel/internal/osfiles/writefiles"
	"github.com/kestrel-os/kestrel/internal/sysctl"
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
		// Decoding empty content checks the encoding name; an error about
		// the (empty) content is not an encoding problem.
		if _, err := writefiles.Decode("", v); err != nil && strings.HasPrefix(err.Error(), "encoding: ") {
			return errors.New(strings.TrimPrefix(err.Error(), "encoding: "))
		}
	case "octal":
		if _, err := writefiles.ParseMode(v); err != nil {
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
			return fmt.Errorf("%q is not an absolute URL", redactURL(v)) // it may still hold a password
		}
		switch u.Scheme {
		case "http", "https", "file":
		default:
			return fmt.Errorf("%q: only http, https and file URLs are supported", redactURL(v))
		}
	case "urlorpath":
		// k3OS's installer copies anything that is not an http/ftp/tftp URL
		// as a local path; its own interactive installer passes a temp file.
		if strings.HasPrefix(v, "/") {
			return nil
		}
		if err := runCheck("url", v); err != nil {
			return fmt.Errorf("%q is neither an absolute path nor an absolute http, https or file URL", v)
		}
	case "absolute":
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%q is not an absolute path", v)
		}
	case "hostname":
		if !hostname.Valid(v) {
			return fmt.Errorf("%q is not a valid host name (letters, digits, '-' and '.', labels of at most 63 characters, 64 in all)", v)
		}
	case "module":
		if _, err := ParseModule(v); err != nil {
			return err
		}
	case "sysctl":
		if _, err := sysctl.Path(v); err != nil {
			return fmt.Errorf("sysctl name %q: %v", v, err)
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
	case "duration":
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration (90s, 5m, 1h30m)", v)
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
	usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	tzRE       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)
	taintRE    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?(=[-A-Za-z0-9_.]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$`)
)

// Data returns the file's decoded content (internal/osfiles/writefiles decodes, so
// validation and the applier agree on every encoding spelling).
func (f File) Data() ([]byte, error) { return writefiles.Decode(f.Content, f.Encoding) }

// Mode returns the file's permissions (default 0644).
func (f File) Mode() (fs.FileMode, error) { return writefiles.ParseMode(f.Permissions) }

// WriteFile is the entry as internal/osfiles/writefiles takes it.
func (f File) WriteFile() writefiles.File {
	return writefiles.File{Path: f.Path, Content: f.Content, Encoding: f.Encoding, Owner: f.Owner, Permissions: f.Permissions}
}

func (f File) check() []problem {
	if _, err := f.Data(); err != nil {
		return []problem{{"content", strings.TrimPrefix(err.Error(), "content: ")}}
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
