package config

// The schema: one set of Go types for every key Kestrel reads. The YAML
// names are the contract; the Go names are free to change.
//
// Struct tags used here:
//   yaml:"name"        the key
//   alias:"a,b"        other accepted spellings; they are rewritten to the
//                      main name before merging
//   k3os:"camelName"   the key's name in k3OS's Go types: every spelling
//                      k3OS accepted for it is accepted too (see aliases)
//   argv:"true"        a list of argv elements: a scalar with spaces in it
//                      is refused (k3OS made it one argument, which k3s
//                      cannot parse)
//
// As in k3OS, a scalar where a list of strings is expected is a one-item
// list (datasource: hetzner).
//   check:"..."        a value check run during validation, with the
//                      position of the value (of each item of a list, of
//                      each key of a map): enum=a|b|c, octal, cidr, ip,
//                      url, taint, absolute, hostname, module, sysctl, ...
//
// Optional booleans are *bool so that appliers can tell "not set" from
// "false"; everything else uses its zero value as "not set".

import k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"

// Config is one whole document, and also the merged result of all sources.
type Config struct {
	// SSHAuthorizedKeys go to the default login user (kestrel).
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty" k3os:"sshAuthorizedKeys"`
	WriteFiles        []File   `yaml:"write_files,omitempty" k3os:"writeFiles"`
	Hostname          string   `yaml:"hostname,omitempty" check:"hostname" k3os:"hostname"`
	InitCmd           []string `yaml:"init_cmd,omitempty" k3os:"initCmd"`
	BootCmd           []string `yaml:"boot_cmd,omitempty" k3os:"bootCmd"`
	RunCmd            []string `yaml:"run_cmd,omitempty" k3os:"runCmd"`
	// Kestrel is the `kestrel:` section; the legacy `k3os:` section maps
	// onto it (see Merge for what happens when a document has both).
	Kestrel Section `yaml:"kestrel,omitempty" alias:"k3os"`
}

// File is one write_files entry.
type File struct {
	Path        string `yaml:"path" check:"absolute" k3os:"path"`
	Content     string `yaml:"content,omitempty" k3os:"content"`
	Encoding    string `yaml:"encoding,omitempty" check:"encoding" k3os:"encoding"`
	Owner       string `yaml:"owner,omitempty" k3os:"owner"`
	Permissions string `yaml:"permissions,omitempty" check:"octal" k3os:"permissions"`
}

// Section holds the keys of the `kestrel:` (or legacy `k3os:`) section: the
// k3OS keys first, then what Kestrel adds.
type Section struct {
	DataSources    []string          `yaml:"data_sources,omitempty" check:"enum=aws|ec2|gcp|openstack|digitalocean|hetzner|packet|scaleway|vultr|cdrom|nocloud" k3os:"dataSources"`
	Modules        []string          `yaml:"modules,omitempty" check:"module" k3os:"modules"`
	Sysctl         map[string]string `yaml:"sysctl,omitempty" check:"sysctl" k3os:"sysctls"`
	NTPServers     []string          `yaml:"ntp_servers,omitempty" k3os:"ntpServers"`
	DNSNameservers []string          `yaml:"dns_nameservers,omitempty" check:"ip" k3os:"dnsNameservers"`
	Wifi           []Wifi            `yaml:"wifi,omitempty" k3os:"wifi"`
	Password       string            `yaml:"password,omitempty" k3os:"password"`
	ServerURL      string            `yaml:"server_url,omitempty" check:"url" k3os:"serverUrl"`
	Token          string            `yaml:"token,omitempty" k3os:"token"`
	Labels         map[string]string `yaml:"labels,omitempty" k3os:"labels"`
	Taints         []string          `yaml:"taints,omitempty" check:"taint" k3os:"taints"`
	K3sArgs        []string          `yaml:"k3s_args,omitempty" k3os:"k3sArgs" argv:"true"`
	Environment    map[string]string `yaml:"environment,omitempty" k3os:"environment"`
	Install        Install           `yaml:"install,omitempty" k3os:"install"`

	// Kestrel additions.
	ConfigURL    string     `yaml:"config_url,omitempty" check:"url"`
	Network      Network    `yaml:"network,omitempty"`
	Registries   Registries `yaml:"registries,omitempty"`
	Timezone     string     `yaml:"timezone,omitempty" check:"timezone"`
	Users        []User     `yaml:"users,omitempty"`
	Mounts       []Mount    `yaml:"mounts,omitempty"`
	K3s          K3s        `yaml:"k3s,omitempty"`
	ConsoleShell *bool      `yaml:"console_shell,omitempty"`
	// KexecReboot: reboots start the next slot's kernel straight from
	// this one (kexec), skipping the firmware and the boot loader.
	KexecReboot bool `yaml:"kexec_reboot,omitempty"`

	// AllowInsecureHTTP lets config_url and ssh_authorized_keys URLs use
	// plain http (warned at every boot).
	AllowInsecureHTTP bool `yaml:"allow_insecure_http,omitempty"`

	// CommandTimeout bounds each boot_cmd, run_cmd and init_cmd command
	// (a Go duration); "" is the default, runcmd.DefaultTimeout.
	CommandTimeout string `yaml:"command_timeout,omitempty" check:"duration"`
}

// Wifi is one Wi-Fi network.
type Wifi struct {
	Name       string `yaml:"name" alias:"ssid"`
	Passphrase string `yaml:"passphrase,omitempty" k3os:"passphrase"`
}

// Install holds the unattended installer's inputs. They are read by
// `kestrel install` only and are never written to an installed config.
type Install struct {
	Device    string `yaml:"device,omitempty" check:"absolute" k3os:"device"`
	Silent    bool   `yaml:"silent,omitempty" k3os:"silent"`
	ForceEFI  bool   `yaml:"force_efi,omitempty" k3os:"forceEfi"`
	ConfigURL string `yaml:"config_url,omitempty" check:"urlorpath" k3os:"configUrl"`
	ISOURL    string `yaml:"iso_url,omitempty" check:"urlorpath" k3os:"isoUrl"`
	NoFormat  bool   `yaml:"no_format,omitempty" k3os:"noFormat"`
	PowerOff  bool   `yaml:"power_off,omitempty" k3os:"powerOff"`
	TTY       string `yaml:"tty,omitempty" k3os:"tty"`
	Debug     bool   `yaml:"debug,omitempty" k3os:"debug"`
}

// Network is static network configuration, applied with netlink. An
// interface that is not listed gets DHCP (k3OS behaviour).
type Network struct {
	Interfaces map[string]Interface `yaml:"interfaces,omitempty"`
}

// Interface configures one link, named by its kernel name (eth0), or a
// new VLAN or bond link to create.
type Interface struct {
	// DHCP defaults to on when no addresses are given, off otherwise.
	DHCP      *bool    `yaml:"dhcp,omitempty"`
	Addresses []string `yaml:"addresses,omitempty" check:"cidr"`
	Gateway   string   `yaml:"gateway,omitempty" check:"ip"`
	Routes    []Route  `yaml:"routes,omitempty"`
	DNS       []string `yaml:"dns,omitempty" check:"ip"`
	MTU       int      `yaml:"mtu,omitempty" check:"mtu"`
	VLAN      *VLAN    `yaml:"vlan,omitempty"`
	Bond      *Bond    `yaml:"bond,omitempty"`
}

// Route is one static route.
type Route struct {
	To     string `yaml:"to" check:"cidr"`
	Via    string `yaml:"via,omitempty" check:"ip"`
	Metric int    `yaml:"metric,omitempty"`
}

// VLAN makes the interface a VLAN on top of Link.
type VLAN struct {
	Link string `yaml:"link"`
	ID   int    `yaml:"id" check:"vlanid"`
}

// Bond makes the interface a bond of Members.
type Bond struct {
	Members []string `yaml:"members"`
	Mode    string   `yaml:"mode,omitempty" check:"enum=balance-rr|active-backup|balance-xor|broadcast|802.3ad|balance-tlb|balance-alb"`
}

// Registries is exactly k3s's registries.yaml, so the types are
// k3sconfig's, which writes that file; the check tags on them are this
// package's.
type (
	Registries     = k3sconfig.Registries
	Mirror         = k3sconfig.Mirror
	RegistryConfig = k3sconfig.RegistryConfig
	RegistryAuth   = k3sconfig.RegistryAuth
	RegistryTLS    = k3sconfig.RegistryTLS
)

// User is an extra local user (the default user kestrel always exists).
type User struct {
	Name              string   `yaml:"name" check:"username"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
	Groups            []string `yaml:"groups,omitempty"`
	// Password is a crypt hash, or a plain password that is hashed
	// (SHA-512 crypt) before anything is written.
	Password string `yaml:"password,omitempty"`
	Shell    string `yaml:"shell,omitempty" check:"absolute"`
}

// Mount is a data disk to mount at boot. Exactly one of Device, Label,
// UUID names the filesystem.
type Mount struct {
	Device  string   `yaml:"device,omitempty" check:"absolute"`
	Label   string   `yaml:"label,omitempty"`
	UUID    string   `yaml:"uuid,omitempty"`
	Path    string   `yaml:"path" check:"absolute"`
	FSType  string   `yaml:"fstype,omitempty"`
	Options []string `yaml:"options,omitempty"`
}

// K3s is Kestrel's k3s section. The legacy k3OS keys (server_url, token,
// labels, taints, k3s_args) still work; see Section.K3sSettings.
type K3s struct {
	Role              string            `yaml:"role,omitempty" check:"enum=server|agent"`
	ServerURL         string            `yaml:"server_url,omitempty" check:"url"`
	Token             string            `yaml:"token,omitempty"`
	TokenFile         string            `yaml:"token_file,omitempty" check:"absolute"`
	DatastoreEndpoint string            `yaml:"datastore_endpoint,omitempty"`
	NodeName          string            `yaml:"node_name,omitempty"`
	Labels            map[string]string `yaml:"labels,omitempty"`
	Taints            []string          `yaml:"taints,omitempty" check:"taint"`
	Args              []string          `yaml:"args,omitempty" argv:"true"`
	// HealthTimeout bounds the wait for k3s to be healthy before the boot
	// is declared not good (a Go duration: 90s, 5m).
	HealthTimeout string `yaml:"health_timeout,omitempty" check:"duration"`
	// UpgradeController false keeps the upgrade controller manifests out of
	// k3s's auto-deploy directory (air-gapped or externally managed).
	UpgradeController *bool `yaml:"upgrade_controller,omitempty"`
}

// DefaultUser is the login user that ssh_authorized_keys and password
// apply to.
const DefaultUser = "kestrel"

// K3sSettings resolves the k3s settings from the k3s section and the legacy
// k3OS keys: a key in the k3s section wins over its legacy spelling; legacy
// labels are merged under k3s.labels; a legacy k3s_args whose first element
// is "server" or "agent" gives the role, and the rest are extra args put
// before k3s.args. Without any role, a server URL means agent, else server.
func (s Section) K3sSettings() K3s {
	k := s.K3s
	k.Labels = map[string]string{}
	for n, v := range s.Labels {
		k.Labels[n] = v
	}
	for n, v := range s.K3s.Labels {
		k.Labels[n] = v
	}
	if k.ServerURL == "" {
		k.ServerURL = s.ServerURL
	}
	if k.Token == "" {
		k.Token = s.Token
	}
	if len(k.Taints) == 0 {
		k.Taints = append([]string(nil), s.Taints...)
	}
	args := append([]string(nil), s.K3sArgs...)
	if len(args) > 0 && (args[0] == "server" || args[0] == "agent") {
		if k.Role == "" {
			k.Role = args[0]
		}
		args = args[1:]
	}
	k.Args = append(args, s.K3s.Args...)
	if k.Role == "" {
		if k.ServerURL != "" {
			k.Role = "agent"
		} else {
			k.Role = "server"
		}
	}
	return k
}
