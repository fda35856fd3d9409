package phases

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/access/sshkeys"
	"github.com/kestrel-os/kestrel/internal/node/access/users"
	"github.com/kestrel-os/kestrel/internal/node/net/netconf"
	"github.com/kestrel-os/kestrel/internal/osfiles/writefiles"
)

// The conversions from the config schema to the appliers' input types.
// They are pure, so they are table-tested on their own.

// Users is the account list: the default user kestrel first (keys from
// ssh_authorized_keys, kestrel.password), then kestrel.users (package
// config refuses an entry named kestrel). Only literal keys are taken;
// remote ones (github:, gitlab:, URLs) come from resolved, by user name,
// once they have been fetched.
func Users(c *config.Config, resolved map[string][]string) []users.User {
	out := []users.User{{Name: config.DefaultUser, Password: c.Kestrel.Password,
		AuthorizedKeys: keys(c.SSHAuthorizedKeys, resolved[config.DefaultUser])}}
	for _, u := range c.Kestrel.Users {
		out = append(out, users.User{Name: u.Name, Groups: u.Groups, Password: u.Password, Shell: u.Shell,
			AuthorizedKeys: keys(u.SSHAuthorizedKeys, resolved[u.Name])})
	}
	return out
}

// keys returns the literal entries, then the resolved remote keys.
func keys(entries, resolved []string) []string {
	var out []string
	for _, e := range entries {
		if !sshkeys.IsRemote(e) {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return append(out, resolved...)
}

// RemoteKeys lists, by user name, the users whose key entries need the
// network, with all their entries (Resolver.Resolve passes literal keys
// through, so the result is the user's whole list).
func RemoteKeys(c *config.Config) map[string][]string {
	out := map[string][]string{}
	add := func(name string, entries []string) {
		for _, e := range entries {
			if sshkeys.IsRemote(e) {
				out[name] = append(out[name], entries...)
				return
			}
		}
	}
	add(config.DefaultUser, c.SSHAuthorizedKeys)
	for _, u := range c.Kestrel.Users {
		add(u.Name, u.SSHAuthorizedKeys)
	}
	return out
}

// PasswordAuth says whether any account has a configured password, the
// condition for the SSH server to accept password logins.
func PasswordAuth(c *config.Config) bool {
	if c == nil {
		return false
	}
	if c.Kestrel.Password != "" {
		return true
	}
	for _, u := range c.Kestrel.Users {
		if u.Password != "" {
			return true
		}
	}
	return false
}

// Files converts write_files.
func Files(c *config.Config) []writefiles.File {
	out := make([]writefiles.File, len(c.WriteFiles))
	for i, f := range c.WriteFiles {
		out[i] = writefiles.File{Path: f.Path, Content: f.Content, Encoding: f.Encoding, Owner: f.Owner, Permissions: f.Permissions}
	}
	return out
}

// NetConfig converts kestrel.network: an interface with a vlan or bond
// section is created as such (a VLAN named by its key), and every listed
// interface gets its layer-3 settings.
func NetConfig(n config.Network) netconf.Config {
	var out netconf.Config
	names := make([]string, 0, len(n.Interfaces))
	for name := range n.Interfaces {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		i := n.Interfaces[name]
		if i.Bond != nil {
			out.Bonds = append(out.Bonds, netconf.Bond{Name: name, Mode: i.Bond.Mode, Members: i.Bond.Members})
		}
		if i.VLAN != nil {
			out.VLANs = append(out.VLANs, netconf.VLAN{Name: name, Link: i.VLAN.Link, ID: i.VLAN.ID})
		}
		ifc := netconf.Interface{Name: name, Addresses: i.Addresses, Gateway: i.Gateway, MTU: i.MTU}
		switch {
		case i.DHCP == nil:
			ifc.DHCP = netconf.DHCPAuto
		case *i.DHCP:
			ifc.DHCP = netconf.DHCPOn
		default:
			ifc.DHCP = netconf.DHCPOff
		}
		for _, r := range i.Routes {
			ifc.Routes = append(ifc.Routes, netconf.Route{To: r.To, Via: r.Via, Metric: r.Metric})
		}
		out.Interfaces = append(out.Interfaces, ifc)
	}
	return out
}

// Nameservers is kestrel.dns_nameservers followed by the interfaces' dns
// lists (in interface name order), without duplicates.
func Nameservers(c *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	add := func(ns []string) {
		for _, s := range ns {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	add(c.Kestrel.DNSNameservers)
	names := make([]string, 0, len(c.Kestrel.Network.Interfaces))
	for n := range c.Kestrel.Network.Interfaces {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(c.Kestrel.Network.Interfaces[n].DNS)
	}
	return out
}

// BasePath is the PATH of services and config commands.
const BasePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Environ is PATH and HOME, then kestrel.environment sorted by name (a
// configured PATH or HOME replaces the default). Invalid names are left
// out (EnvironmentFile reports them).
func Environ(c *config.Config) []string {
	env := map[string]string{"PATH": BasePath, "HOME": "/root"}
	if c != nil {
		for k, v := range c.Kestrel.Environment {
			if envName.MatchString(k) {
				env[k] = v
			}
		}
	}
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, k := range names {
		out[i] = k + "=" + env[k]
	}
	return out
}

// EnvironmentFile renders /etc/environment: one NAME="value" line per
// kestrel.environment entry, sorted, quoted so that both a POSIX shell
// (`set -a; . /etc/environment`) and ReadEnvironment read the value back
// exactly. Names that are not shell identifiers are reported, not written.
func EnvironmentFile(env map[string]string) ([]byte, error) {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Generated by Kestrel from kestrel.environment; edits are lost at boot.\n")
	var bad []string
	for _, k := range names {
		if !envName.MatchString(k) || strings.ContainsAny(env[k], "\n\r") {
			bad = append(bad, k)
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(env[k]))
	}
	if len(bad) > 0 {
		return []byte(b.String()), fmt.Errorf("kestrel.environment: %q: left out: not a variable name (letters, digits, _) or a value with a line break", bad)
	}
	return []byte(b.String()), nil
}

// shellQuote double-quotes v, escaping what a shell expands inside double
// quotes.
func shellQuote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(v) + `"`
}

// ParseEnvironment reads what EnvironmentFile wrote (and plain
// NAME=value lines) into NAME=value entries.
func ParseEnvironment(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(k) {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = unquote(v[1 : len(v)-1])
		} else if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		out = append(out, k+"="+v)
	}
	return out
}

func unquote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
