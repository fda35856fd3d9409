// Package config turns what a node's config says about k3s into what
// stage 2 hands to k3s: /etc/rancher/k3s/config.yaml, registries.yaml, the
// command line (`k3s server|agent ...`) and the environment.
//
// The input is this package's own Input type, not the OS config schema: the
// config package maps its keys (and the k3OS `k3os:` legacy keys, which
// Input carries as Legacy) onto it. Translation is pure: no files are read,
// so the output is a function of the input alone and is tested against
// golden files.
//
// Rules, chosen so that nothing the user wrote is silently dropped:
//   - the role comes from Role, else from the first legacy k3s_args element
//     when it is "server" or "agent", else "agent" when a server URL is set,
//     else "server" (k3OS's rule). Two sources naming different roles, or two
//     different server URLs or tokens, are an error;
//   - labels and environment variables from both forms are merged; the same
//     key with two different values is an error; taints are the union;
//   - the labels kestrel.io/version (VersionLabelValue of the version) and
//     kestrel.io/slot are always added and may not be set by the user;
//   - an agent needs a server URL and a token or token file; an agent cannot
//     take a datastore endpoint;
//   - the legacy k3s_args (after the role) and then the extra args are
//     passed on the command line after the role, in order, unparsed: k3s
//     gives command-line flags precedence over config.yaml.
//
// Errors never contain the value of a token, a datastore endpoint, a
// registry credential or an environment variable (which may be K3S_TOKEN):
// they reach the console, `kestrel status` and the boot-health record, which
// more people read than the config. They name the keys instead.
//
// Limits: flags in extra args are not validated (k3s rejects unknown ones at
// start); manifests and airgap images are not this package's concern;
// registries.yaml carries the mirrors/configs subset k3s documents (endpoint,
// rewrite, auth, tls), not containerd's full hosts.toml model.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// Paths stage 2 writes (relative to the new root).
const (
	ConfigPath     = "/etc/rancher/k3s/config.yaml"
	RegistriesPath = "/etc/rancher/k3s/registries.yaml"
)

// Labels Kestrel always puts on its nodes.
const (
	LabelVersion = "kestrel.io/version"
	LabelSlot    = "kestrel.io/slot"
)

// Roles.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// Input is everything the config says about k3s, plus the facts stage 2
// knows about the running OS (Version, Slot).
type Input struct {
	Role              string            `yaml:"role,omitempty"` // server | agent | "" (derived)
	ServerURL         string            `yaml:"server_url,omitempty"`
	Token             string            `yaml:"token,omitempty"`
	TokenFile         string            `yaml:"token_file,omitempty"`
	DatastoreEndpoint string            `yaml:"datastore_endpoint,omitempty"`
	NodeName          string            `yaml:"node_name,omitempty"`
	Labels            map[string]string `yaml:"labels,omitempty"`
	Taints            []string          `yaml:"taints,omitempty"`      // key[=value]:Effect
	ExtraArgs         []string          `yaml:"extra_args,omitempty"`  // after the role and legacy k3s_args
	Environment       map[string]string `yaml:"environment,omitempty"` // for k3s's process
	Registries        Registries        `yaml:"registries,omitempty"`

	// Legacy carries the k3OS `k3os:` keys as they were written.
	Legacy Legacy `yaml:"legacy,omitempty"`

	// Version is the running Kestrel version, Slot the root slot (a|b),
	// or "live" on the ISO's live system (its node is labelled so, and no
	// Plan selecting slots a and b takes it).
	Version string `yaml:"version"`
	Slot    string `yaml:"slot"`
}

// Legacy is the k3s part of a k3OS config (`k3os:` section).
type Legacy struct {
	K3sArgs     []string          `yaml:"k3s_args,omitempty"`
	ServerURL   string            `yaml:"server_url,omitempty"`
	Token       string            `yaml:"token,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Taints      []string          `yaml:"taints,omitempty"`
	Environment map[string]string `yaml:"environment,omitempty"`
}

// Registries is k3s's registries.yaml. It is also the type of config.yaml's
// registries key (internal/config aliases these types), so the check tags are
// internal/config's validation: an endpoint is a URL, TLS files are absolute
// paths. This package does not read them.
type Registries struct {
	Mirrors map[string]Mirror         `yaml:"mirrors,omitempty"`
	Configs map[string]RegistryConfig `yaml:"configs,omitempty"`
}

// Mirror lists the endpoints used instead of a registry.
type Mirror struct {
	Endpoint []string          `yaml:"endpoint,omitempty" check:"url"`
	Rewrite  map[string]string `yaml:"rewrite,omitempty"`
}

// RegistryConfig holds credentials and TLS settings for one registry host.
type RegistryConfig struct {
	Auth *RegistryAuth `yaml:"auth,omitempty"`
	TLS  *RegistryTLS  `yaml:"tls,omitempty"`
}

// RegistryAuth is the auth block of a registry config.
type RegistryAuth struct {
	Username      string `yaml:"username,omitempty"`
	Password      string `yaml:"password,omitempty"`
	Auth          string `yaml:"auth,omitempty"`
	IdentityToken string `yaml:"identity_token,omitempty"`
}

// RegistryTLS is the tls block of a registry config.
type RegistryTLS struct {
	CertFile           string `yaml:"cert_file,omitempty" check:"absolute"`
	KeyFile            string `yaml:"key_file,omitempty" check:"absolute"`
	CAFile             string `yaml:"ca_file,omitempty" check:"absolute"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

// Output is what stage 2 writes and runs.
type Output struct {
	Role string
	// Argv is the full command line, Argv[0] being "k3s".
	Argv []string
	// Env is NAME=value, sorted by name: the variables to add to k3s's
	// environment.
	Env []string
	// ConfigYAML is the content of ConfigPath.
	ConfigYAML []byte
	// RegistriesYAML is the content of RegistriesPath; nil when no
	// registries are configured (the file is then removed).
	RegistriesYAML []byte
}

// configFile is /etc/rancher/k3s/config.yaml; field order is file order.
type configFile struct {
	Server            string   `yaml:"server,omitempty"`
	Token             string   `yaml:"token,omitempty"`
	TokenFile         string   `yaml:"token-file,omitempty"`
	DatastoreEndpoint string   `yaml:"datastore-endpoint,omitempty"`
	NodeName          string   `yaml:"node-name,omitempty"`
	NodeLabel         []string `yaml:"node-label,omitempty"`
	NodeTaint         []string `yaml:"node-taint,omitempty"`
}

const header = "# Written by kestrel at boot from the node config; edits here are lost at the next boot.\n"

var (
	slotRE     = regexp.MustCompile(`^(a|b|live)$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKeyRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValRE = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
	effects    = map[string]bool{"NoSchedule": true, "PreferNoSchedule": true, "NoExecute": true}
)

// Translate turns in into the files, command line and environment for k3s.
func Translate(in Input) (Output, error) {
	if in.Version == "" {
		return Output{}, fmt.Errorf("k3s: kestrel version is empty (needed for the %s label)", LabelVersion)
	}
	if !slotRE.MatchString(in.Slot) {
		return Output{}, fmt.Errorf("k3s: slot %q is not a, b or live", in.Slot)
	}

	legacyArgs := in.Legacy.K3sArgs
	legacyRole := ""
	if len(legacyArgs) > 0 && (legacyArgs[0] == RoleServer || legacyArgs[0] == RoleAgent) {
		legacyRole, legacyArgs = legacyArgs[0], legacyArgs[1:]
	}
	server, err := same("server URL", false, in.ServerURL, in.Legacy.ServerURL)
	if err != nil {
		return Output{}, err
	}
	token, err := same("token", true, in.Token, in.Legacy.Token)
	if err != nil {
		return Output{}, err
	}
	role, err := same("role", false, in.Role, legacyRole)
	if err != nil {
		return Output{}, err
	}
	switch {
	case role == "" && server != "":
		role = RoleAgent
	case role == "":
		role = RoleServer
	case role != RoleServer && role != RoleAgent:
		return Output{}, fmt.Errorf("k3s: role %q is neither server nor agent", role)
	}
	if role == RoleAgent {
		if server == "" {
			return Output{}, fmt.Errorf("k3s: an agent needs a server URL")
		}
		if token == "" && in.TokenFile == "" {
			return Output{}, fmt.Errorf("k3s: an agent needs a token or a token file to join %s", server)
		}
		if in.DatastoreEndpoint != "" {
			return Output{}, fmt.Errorf("k3s: datastore endpoint is a server setting, but the role is agent")
		}
	}
	if token != "" && in.TokenFile != "" {
		return Output{}, fmt.Errorf("k3s: both a token and a token file are set; keep one")
	}
	if server != "" && !strings.HasPrefix(server, "https://") {
		return Output{}, fmt.Errorf("k3s: server URL %q must start with https://", server)
	}

	labels, err := mergeLabels(in)
	if err != nil {
		return Output{}, err
	}
	taints, err := mergeTaints(in.Taints, in.Legacy.Taints)
	if err != nil {
		return Output{}, err
	}
	env, err := mergeEnv(in.Environment, in.Legacy.Environment)
	if err != nil {
		return Output{}, err
	}

	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(configFile{
		Server:            server,
		Token:             token,
		TokenFile:         in.TokenFile,
		DatastoreEndpoint: in.DatastoreEndpoint,
		NodeName:          in.NodeName,
		NodeLabel:         labels,
		NodeTaint:         taints,
	}); err != nil {
		return Output{}, fmt.Errorf("k3s: encode config.yaml: %w", err)
	}
	enc.Close()

	out := Output{
		Role:       role,
		Argv:       append(append([]string{"k3s", role}, legacyArgs...), in.ExtraArgs...),
		Env:        env,
		ConfigYAML: buf.Bytes(),
	}
	if out.RegistriesYAML, err = registriesYAML(in.Registries); err != nil {
		return Output{}, err
	}
	return out, nil
}

// File is one file stage 2 writes.
type File struct {
	Path string // absolute, inside the new root
	Mode os.FileMode
	Data []byte // nil: remove the file
}

// Files lists what stage 2 writes. Both files may hold secrets (token,
// registry passwords), so they are 0600.
func (o Output) Files() []File {
	return []File{
		{Path: ConfigPath, Mode: 0o600, Data: o.ConfigYAML},
		{Path: RegistriesPath, Mode: 0o600, Data: o.RegistriesYAML},
	}
}

// WriteFiles writes Files under root ("/" on the device), replacing each
// file atomically (internal/osfiles/atomicfile) and removing registries.yaml when there is none.
func (o Output) WriteFiles(root string) error {
	for _, f := range o.Files() {
		p := filepath.Join(root, f.Path)
		if f.Data == nil {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("k3s: remove %s: %w", p, err)
			}
			continue
		}
		if err := atomicfile.Write(p, f.Data, f.Mode, atomicfile.NoChown, atomicfile.NoChown); err != nil {
			return fmt.Errorf("k3s: %w", err)
		}
	}
	return nil
}

// same returns the one value two config forms give, or an error when they
// disagree; the error shows the values only when they are not secret.
func same(what string, secret bool, typed, legacy string) (string, error) {
	if typed != "" && legacy != "" && typed != legacy {
		if secret {
			return "", fmt.Errorf("k3s: the %s differs from the one the k3os legacy key gives (values not shown)", what)
		}
		return "", fmt.Errorf("k3s: %s is %q but the k3os legacy key says %q", what, typed, legacy)
	}
	if typed != "" {
		return typed, nil
	}
	return legacy, nil
}

func mergeLabels(in Input) ([]string, error) {
	m := map[string]string{}
	from := map[string]string{}
	add := func(src, k, v string) error {
		if !labelKeyRE.MatchString(k) || len(k) > 316 {
			return fmt.Errorf("k3s: %s label key %q is not a valid label key", src, k)
		}
		if !labelValRE.MatchString(v) || len(v) > 63 {
			return fmt.Errorf("k3s: %s label %s value %q is not a valid label value", src, k, v)
		}
		if k == LabelVersion || k == LabelSlot {
			return fmt.Errorf("k3s: label %s is set by kestrel itself; remove it from %s", k, src)
		}
		if old, ok := m[k]; ok && old != v {
			return fmt.Errorf("k3s: label %s is %q in %s and %q in %s", k, old, from[k], v, src)
		}
		m[k], from[k] = v, src
		return nil
	}
	for _, src := range []struct {
		name string
		m    map[string]string
	}{{"labels", in.Labels}, {"k3os.labels", in.Legacy.Labels}} {
		for _, k := range sortedKeys(src.m) {
			if err := add(src.name, k, src.m[k]); err != nil {
				return nil, err
			}
		}
	}
	m[LabelVersion] = VersionLabelValue(in.Version)
	m[LabelSlot] = in.Slot
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + m[k]
	}
	return out, nil
}

// VersionLabelValue is the value of the kestrel.io/version label for a
// Kestrel version. A label value allows only [A-Za-z0-9-_.], so any other
// character ("+" of semver build metadata, for one) becomes "-", the way
// image tags munge versions, which is also how the upgrade controller
// compares a Plan's version with this label; more than 63 characters are
// cut.
func VersionLabelValue(v string) string {
	v = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '-'
	}, v)
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-._")
}

func mergeTaints(typed, legacy []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, t := range append(append([]string{}, typed...), legacy...) {
		i := strings.LastIndex(t, ":")
		if i <= 0 || !effects[t[i+1:]] {
			return nil, fmt.Errorf("k3s: taint %q is not key[=value]:NoSchedule|PreferNoSchedule|NoExecute", t)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

func mergeEnv(typed, legacy map[string]string) ([]string, error) {
	m := map[string]string{}
	from := map[string]string{}
	add := func(src, k, v string) error {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("k3s: %s: %q is not a variable name", src, k)
		}
		if old, ok := m[k]; ok && old != v {
			// Values not shown: a variable may hold a secret (K3S_TOKEN).
			return fmt.Errorf("k3s: environment %s is set twice, to different values, in %s and %s", k, from[k], src)
		}
		m[k], from[k] = v, src
		return nil
	}
	for _, k := range sortedKeys(typed) {
		if err := add("environment", k, typed[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range sortedKeys(legacy) {
		if err := add("k3os.environment", k, legacy[k]); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

func registriesYAML(r Registries) ([]byte, error) {
	if len(r.Mirrors) == 0 && len(r.Configs) == 0 {
		return nil, nil
	}
	for host, m := range r.Mirrors {
		if host == "" {
			return nil, fmt.Errorf("k3s: registries: mirror with an empty registry name")
		}
		for _, e := range m.Endpoint {
			if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
				return nil, fmt.Errorf("k3s: registries: mirror %s endpoint %q needs http:// or https://", host, e)
			}
		}
	}
	for host, c := range r.Configs {
		if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
			return nil, fmt.Errorf("k3s: registries: config %s: tls cert_file and key_file go together", host)
		}
	}
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(r); err != nil { // maps are encoded sorted by key
		return nil, fmt.Errorf("k3s: encode registries.yaml: %w", err)
	}
	enc.Close()
	return buf.Bytes(), nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
