package config

// cloudInitKeys explains the cloud-init keys Kestrel does not implement,
// keyed by "schema path of the mapping|key" ("" for the top level). A
// cloud-init user gets Kestrel's equivalent, not a did-you-mean that leads
// into a second error (users: at the top level is not kestrel.users with
// other field names). Keys that cloud-init and Kestrel share
// (ssh_authorized_keys, write_files, hostname, runcmd/bootcmd through
// k3OS's spellings) are not here; a cloud-init key missing from here is
// reported as unknown with the usual did-you-mean.
var cloudInitKeys = map[string]string{
	"|users":                    "cloud-init's users is not supported; Kestrel's equivalent is kestrel.users (fields name, ssh_authorized_keys, groups, password, shell); the default user is kestrel, set with the top-level ssh_authorized_keys and kestrel.password",
	"|user":                     "cloud-init's user is not supported; Kestrel's default user is always kestrel: set its keys with the top-level ssh_authorized_keys and its password with kestrel.password",
	"|groups":                   "cloud-init's groups is not supported; Kestrel's equivalent is kestrel.users[].groups (groups are created as needed)",
	"|password":                 "cloud-init's password is not supported; Kestrel's equivalent is kestrel.password (the kestrel user's password, in the kestrel: section)",
	"|chpasswd":                 "cloud-init's chpasswd is not supported; Kestrel's equivalent is kestrel.password (the kestrel user) and kestrel.users[].password; passwords never expire",
	"|ssh_pwauth":               "cloud-init's ssh_pwauth is not supported; Kestrel's equivalent is setting a password: SSH password login is on exactly when an account has one (kestrel.password, kestrel.users[].password)",
	"|ntp":                      "cloud-init's ntp is not supported; Kestrel's equivalent is kestrel.ntp_servers (a list of servers; pool names are servers too)",
	"|ssh_keys":                 "cloud-init's ssh_keys is not supported; Kestrel has no equivalent: its SSH host keys are generated on the first boot and kept on the state partition",
	"|ssh":                      "cloud-init's ssh is not supported; Kestrel has no equivalent (host keys are not printed to the console)",
	"|no_ssh_fingerprints":      "cloud-init's no_ssh_fingerprints is not supported; Kestrel has no equivalent (fingerprints are not printed to the console)",
	"|packages":                 "cloud-init's packages is not supported; Kestrel has no equivalent: its root filesystem is read-only and has no package manager; run software as containers in k3s",
	"|package_update":           "cloud-init's package_update is not supported; Kestrel has no equivalent: the OS is updated as a whole (kestrel upgrade, or upgrade Plans)",
	"|package_upgrade":          "cloud-init's package_upgrade is not supported; Kestrel has no equivalent: the OS is updated as a whole (kestrel upgrade, or upgrade Plans)",
	"|timezone":                 "cloud-init's timezone is not supported at the top level; Kestrel's equivalent is kestrel.timezone (in the kestrel: section)",
	"|mounts":                   "cloud-init's mounts is not supported; Kestrel's equivalent is kestrel.mounts (fields device/label/uuid, path, fstype, options)",
	"write_files[]|append":      "cloud-init's append is not supported; Kestrel writes the whole file: give its whole content, or append from boot_cmd (cat >> FILE)",
	"write_files[]|defer":       "cloud-init's defer is not supported; Kestrel writes files in the boot phase, after the users exist",
	"write_files[]|compression": "cloud-init's legacy compression key is not supported; Kestrel's equivalent is encoding (b64, gzip, gz+b64)",
	"write_files[]|perms":       "cloud-init's legacy perms key is not supported; Kestrel's equivalent is permissions",
}
