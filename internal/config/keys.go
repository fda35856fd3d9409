package config

import "strings"

// Phase is the boot phase that applies a key.
type Phase int

const (
	// PhaseNone marks a section that only groups keys.
	PhaseNone Phase = iota
	// PhaseInitramfs: stage 1, before switch_root. The on-disk config (ESP,
	// state partition, NoCloud disk) is already visible here.
	PhaseInitramfs
	// PhaseBoot: stage 2, before the network is up.
	PhaseBoot
	// PhaseNetworkUp: stage 2, once the network is up (remote datasources,
	// key downloads, time sync, k3s, run_cmd).
	PhaseNetworkUp
	// PhaseInstall: read by `kestrel install` only, never applied at boot
	// and never written to an installed config.
	PhaseInstall
)

func (p Phase) String() string {
	switch p {
	case PhaseInitramfs:
		return "initramfs"
	case PhaseBoot:
		return "boot"
	case PhaseNetworkUp:
		return "network-up"
	case PhaseInstall:
		return "install"
	}
	return "-"
}

// Key documents one schema key.
type Key struct {
	// Path is the key's schema path: sections joined by ".", "[]" after a
	// list, "*" for a map key (write_files[].path,
	// kestrel.network.interfaces.*.dhcp).
	Path  string
	Phase Phase // PhaseNone: inherited from the closest parent
	Doc   string
}

// Keys lists every key of the schema, in document order. It is the one
// table the phase runner, the JSON schema and the docs use; a test checks
// it covers every field of Config.
var Keys = []Key{
	{"ssh_authorized_keys", PhaseBoot, "public keys of the default user kestrel: literal keys (boot phase), github:USER, gitlab:USER or an https URL, optionally pinned with #sha256=HEX (fetched at network-up)"},
	{"write_files", PhaseBoot, "files written atomically at boot"},
	{"write_files[].path", PhaseNone, "absolute path of the file (required)"},
	{"write_files[].content", PhaseNone, "file content, encoded as `encoding` says"},
	{"write_files[].encoding", PhaseNone, "content encoding: empty (plain), b64/base64, gz/gzip, gz+b64 (also gzip+base64, gz+base64, gzip+b64)"},
	{"write_files[].owner", PhaseNone, "user[:group], names or numbers (default root:root)"},
	{"write_files[].permissions", PhaseNone, "octal mode as a string (default \"0644\")"},
	{"hostname", PhaseBoot, "host name: /etc/hostname, /etc/hosts and the kernel"},
	{"init_cmd", PhaseInitramfs, "shell commands run in the initramfs, before switch_root"},
	{"boot_cmd", PhaseBoot, "shell commands run at boot, before the network is up"},
	{"run_cmd", PhaseNetworkUp, "shell commands run once the network is up"},
	{"kestrel", PhaseNone, "Kestrel's section; the k3OS section name k3os: is accepted too"},
	{"kestrel.data_sources", PhaseNetworkUp, "datasources to query: aws/ec2, openstack, gcp, digitalocean, hetzner, packet, vultr, cdrom/nocloud (scaleway is accepted for k3OS configs and reported as not implemented)"},
	{"kestrel.modules", PhaseInitramfs, "kernel modules to load, parameters after the name (\"mod param=x\")"},
	{"kestrel.sysctl", PhaseInitramfs, "sysctl name -> value, written under /proc/sys (k3OS spelling sysctls accepted)"},
	{"kestrel.ntp_servers", PhaseNetworkUp, "NTP servers to sync time from"},
	{"kestrel.dns_nameservers", PhaseBoot, "DNS servers for resolv.conf"},
	{"kestrel.wifi", PhaseBoot, "Wi-Fi networks"},
	{"kestrel.wifi[].name", PhaseNone, "SSID (required)"},
	{"kestrel.wifi[].passphrase", PhaseNone, "WPA passphrase"},
	{"kestrel.password", PhaseBoot, "password of the default user kestrel: a crypt hash ($6$...) or a plain password, hashed with SHA-512 crypt before it is written; no password login when unset"},
	{"kestrel.server_url", PhaseNetworkUp, "k3OS: k3s server to join as an agent (same as kestrel.k3s.server_url)"},
	{"kestrel.token", PhaseNetworkUp, "k3OS: k3s join token (same as kestrel.k3s.token)"},
	{"kestrel.labels", PhaseNetworkUp, "k3OS: node labels at registration (merged with kestrel.k3s.labels)"},
	{"kestrel.taints", PhaseNetworkUp, "k3OS: node taints key=value:Effect (same as kestrel.k3s.taints)"},
	{"kestrel.k3s_args", PhaseNetworkUp, "k3OS: k3s argv; a first element server or agent gives the role"},
	{"kestrel.environment", PhaseBoot, "environment for the system and k3s (http_proxy, https_proxy, no_proxy, ...)"},
	{"kestrel.install", PhaseInstall, "unattended installer inputs, never written to the installed config"},
	{"kestrel.install.device", PhaseNone, "disk to install to"},
	{"kestrel.install.silent", PhaseNone, "do not ask for confirmation"},
	{"kestrel.install.force_efi", PhaseNone, "install for UEFI even when booted in BIOS mode"},
	{"kestrel.install.config_url", PhaseNone, "config to install (http, https or file URL, or an absolute path)"},
	{"kestrel.install.iso_url", PhaseNone, "image to install from (URL or absolute path)"},
	{"kestrel.install.no_format", PhaseNone, "install onto existing partitions"},
	{"kestrel.install.power_off", PhaseNone, "power off instead of rebooting when done"},
	{"kestrel.install.tty", PhaseNone, "console tty of the installed system"},
	{"kestrel.install.debug", PhaseNone, "verbose installer"},
	{"kestrel.config_url", PhaseNetworkUp, "one more config source fetched at network-up (https or file URL; http only with allow_insecure_http), merged last; an optional #sha256=HEX pins its content"},
	{"kestrel.allow_insecure_http", PhaseNetworkUp, "also fetch config_url and ssh_authorized_keys URLs over plain http: anyone on the network path can then change this node's config and keys (warned at every boot; lab networks only)"},
	{"kestrel.network", PhaseBoot, "static network configuration, applied with netlink"},
	{"kestrel.network.interfaces", PhaseNone, "interfaces by name; unlisted interfaces use DHCP"},
	{"kestrel.network.interfaces.*.dhcp", PhaseNone, "DHCPv4 on or off (default: on unless addresses are given)"},
	{"kestrel.network.interfaces.*.addresses", PhaseNone, "addresses in CIDR notation"},
	{"kestrel.network.interfaces.*.gateway", PhaseNone, "default gateway"},
	{"kestrel.network.interfaces.*.routes", PhaseNone, "static routes"},
	{"kestrel.network.interfaces.*.routes[].to", PhaseNone, "destination in CIDR notation (required)"},
	{"kestrel.network.interfaces.*.routes[].via", PhaseNone, "next hop"},
	{"kestrel.network.interfaces.*.routes[].metric", PhaseNone, "route metric"},
	{"kestrel.network.interfaces.*.dns", PhaseNone, "DNS servers learnt from this interface"},
	{"kestrel.network.interfaces.*.mtu", PhaseNone, "MTU (68-65535)"},
	{"kestrel.network.interfaces.*.vlan", PhaseNone, "make this interface a VLAN"},
	{"kestrel.network.interfaces.*.vlan.link", PhaseNone, "parent interface (required)"},
	{"kestrel.network.interfaces.*.vlan.id", PhaseNone, "VLAN id 1-4094 (required)"},
	{"kestrel.network.interfaces.*.bond", PhaseNone, "make this interface a bond"},
	{"kestrel.network.interfaces.*.bond.members", PhaseNone, "member interfaces (required)"},
	{"kestrel.network.interfaces.*.bond.mode", PhaseNone, "bonding mode: balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb"},
	{"kestrel.registries", PhaseBoot, "written as k3s /etc/rancher/k3s/registries.yaml"},
	{"kestrel.registries.mirrors", PhaseNone, "registry name -> mirror"},
	{"kestrel.registries.mirrors.*.endpoint", PhaseNone, "mirror endpoints, tried in order"},
	{"kestrel.registries.mirrors.*.rewrite", PhaseNone, "image name rewrites, regexp -> replacement"},
	{"kestrel.registries.configs", PhaseNone, "registry host -> auth and TLS settings"},
	{"kestrel.registries.configs.*.auth", PhaseNone, "credentials"},
	{"kestrel.registries.configs.*.auth.username", PhaseNone, "user name"},
	{"kestrel.registries.configs.*.auth.password", PhaseNone, "password"},
	{"kestrel.registries.configs.*.auth.auth", PhaseNone, "base64 user:password"},
	{"kestrel.registries.configs.*.auth.identity_token", PhaseNone, "identity token"},
	{"kestrel.registries.configs.*.tls", PhaseNone, "TLS settings"},
	{"kestrel.registries.configs.*.tls.cert_file", PhaseNone, "client certificate"},
	{"kestrel.registries.configs.*.tls.key_file", PhaseNone, "client key"},
	{"kestrel.registries.configs.*.tls.ca_file", PhaseNone, "CA bundle"},
	{"kestrel.registries.configs.*.tls.insecure_skip_verify", PhaseNone, "skip certificate verification"},
	{"kestrel.timezone", PhaseBoot, "time zone name from the tz database (Europe/Paris); default UTC"},
	{"kestrel.users", PhaseBoot, "extra local users"},
	{"kestrel.users[].name", PhaseNone, "login name (required)"},
	{"kestrel.users[].ssh_authorized_keys", PhaseNone, "public keys (github:/gitlab:/URL entries fetched at network-up)"},
	{"kestrel.users[].groups", PhaseNone, "supplementary groups"},
	{"kestrel.users[].password", PhaseNone, "crypt hash or plain password (hashed before writing); no password login when unset"},
	{"kestrel.users[].shell", PhaseNone, "login shell (default /bin/sh)"},
	{"kestrel.mounts", PhaseBoot, "data filesystems to mount"},
	{"kestrel.mounts[].device", PhaseNone, "device path (one of device, label, uuid)"},
	{"kestrel.mounts[].label", PhaseNone, "filesystem label"},
	{"kestrel.mounts[].uuid", PhaseNone, "filesystem UUID"},
	{"kestrel.mounts[].path", PhaseNone, "mount point (required)"},
	{"kestrel.mounts[].fstype", PhaseNone, "filesystem type (default: probed)"},
	{"kestrel.mounts[].options", PhaseNone, "mount options"},
	{"kestrel.k3s", PhaseNetworkUp, "k3s settings, written to /etc/rancher/k3s/config.yaml before k3s starts"},
	{"kestrel.k3s.role", PhaseNone, "server or agent (default: agent when a server URL is set, else server)"},
	{"kestrel.k3s.server_url", PhaseNone, "server to join"},
	{"kestrel.k3s.token", PhaseNone, "join token"},
	{"kestrel.k3s.token_file", PhaseNone, "file holding the join token"},
	{"kestrel.k3s.datastore_endpoint", PhaseNone, "external datastore (server only)"},
	{"kestrel.k3s.node_name", PhaseNone, "node name (default: hostname)"},
	{"kestrel.k3s.labels", PhaseNone, "node labels at registration"},
	{"kestrel.k3s.taints", PhaseNone, "node taints key=value:Effect at registration"},
	{"kestrel.k3s.args", PhaseNone, "extra k3s arguments"},
	{"kestrel.k3s.health_timeout", PhaseNone, "how long k3s has to become healthy before the boot is declared not good (Go duration: 90s, 5m; default 5m)"},
	{"kestrel.k3s.upgrade_controller", PhaseNone, "run the upgrade controller: its manifests into k3s's auto-deploy dir on servers, its image into k3s's airgap images on every node (default true; false removes what kestrel placed)"},
	{"kestrel.console_shell", PhaseBoot, "root shell on the console without login (default true; false: a login prompt, for accounts with a password)"},
	{"kestrel.kexec_reboot", PhaseBoot, "reboots (kestrel reboot, upgrades, a failed trial) start the next slot's kernel from the running one (kexec), skipping the firmware and the boot loader; the try of a slot on trial is counted as the loader would; x86_64 with systemd-boot only, elsewhere and when the load fails a firmware reboot (default false)"},
	{"kestrel.command_timeout", PhaseBoot, "deadline of each init_cmd, boot_cmd and run_cmd command, after which its process group is killed and the failure reported (Go duration; default 5m)"},
}

var keyIndex = func() map[string]*Key {
	m := make(map[string]*Key, len(Keys))
	for i := range Keys {
		m[Keys[i].Path] = &Keys[i]
	}
	return m
}()

// LookupKey returns the table entry of a schema path, or nil.
func LookupKey(path string) *Key { return keyIndex[path] }

// PhaseOf returns the phase that applies the key at a schema path (its
// own, or its closest parent's). A concrete path such as
// "write_files[2].path" or "kestrel.sysctl.vm.swappiness" is accepted too.
func PhaseOf(path string) Phase {
	p := SchemaPath(path)
	for p != "" {
		if k := keyIndex[p]; k != nil && k.Phase != PhaseNone {
			return k.Phase
		}
		p = parentPath(p)
	}
	return PhaseNone
}

// KeysIn returns the top-level keys (those with their own phase) applied
// in phase p, for the phase runner and the docs.
func KeysIn(p Phase) []string {
	var out []string
	for _, k := range Keys {
		if k.Phase == p {
			out = append(out, k.Path)
		}
	}
	return out
}

// SSHKeyPhase says when one ssh_authorized_keys entry can be applied:
// literal keys at boot, github:/gitlab:/URL entries once the network is up.
func SSHKeyPhase(entry string) Phase {
	e := strings.TrimSpace(entry)
	for _, p := range []string{"github:", "gitlab:", "http://", "https://"} {
		if strings.HasPrefix(e, p) {
			return PhaseNetworkUp
		}
	}
	return PhaseBoot
}

// SchemaPath turns a concrete path (write_files[2].path,
// kestrel.network.interfaces.eth0.mtu, kestrel.sysctl.vm.swappiness) into
// its schema path (write_files[].path, kestrel.network.interfaces.*.mtu,
// kestrel.sysctl.*).
func SchemaPath(concrete string) string {
	parts, err := schemaResolve(concrete)
	if err != nil {
		return concrete
	}
	return parts
}

func parentPath(p string) string {
	switch {
	case strings.HasSuffix(p, "[]"):
		return strings.TrimSuffix(p, "[]")
	case strings.HasSuffix(p, ".*"):
		return strings.TrimSuffix(p, ".*")
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}
