// Package config is Kestrel's config schema and the machinery around it:
// strict decoding, validation with file:line:col errors, merging of all
// sources with provenance, and the boot phase of every key.
//
// One set of Go types (Config and below) is the schema; k3OS documents are
// accepted unchanged (`k3os:` is read as `kestrel:`, `sysctls:` as
// `sysctl:`). The Keys table gives every key its phase and meaning; the
// JSON Schema (schema/config.schema.json, go generate) and
// config.yaml.example are tested against it.
//
// Use, in the phase runner:
//
//	loc := config.DefaultLocations(root, espMount, "/proc/cmdline")
//	src := config.LoadLocal(loc)                    // sources 1-5
//	local := datasource.Local(ctx, src, nocloud)    // source 6
//	r, err := src.Merge()                           // r.Config, r.Errors
//	... initramfs and boot phases from r.Config ...
//	net := datasource.Network(ctx, src, r.Config, env) // sources 7-8
//	r2, err := src.Merge()
//	for _, k := range config.Changed(r.Config, r2.Config) { ... apply late ... }
//	datasource.SaveCache(datasource.DefaultCache, datasource.Cache{Documents: append(local, net...), ...})
//
// Rules (details on Merge and LoadLocal): a source with a syntax, type or
// value error is skipped whole, its errors kept in Result.Errors; an
// unknown key is reported there too but only that key (or the list entry
// holding it) is left out, so a stray key does not cost a node its SSH
// keys and token (`kestrel config validate` still fails on it). Mappings
// merge key by key, lists and scalars replace, null changes nothing.
//
// k3OS's spellings are accepted: every key name k3OS's FuzzyNames accepted
// (singular and run-together forms: datasource, ssh_authorized_key,
// runcmd), a scalar for a list of strings (a one-item list), and YAML
// !!binary values (decoded to bytes; write_files' encoding then applies).
//
// Limits: one YAML document per source; YAML merge keys (<<) are refused;
// anchors and aliases are expanded (at most 100000 values per document);
// syntax errors carry goccy/go-yaml's line and column when the source is
// small and shallow enough to ask it cheaply (else yaml.v3's line and
// column 1); a source is at most MaxSourceSize bytes; strings
// accept any YAML scalar (port: 8080 is the string "8080"). Cross-field
// rules that need the merged result (an agent without a server URL, a
// timezone missing from the image's zoneinfo) are the appliers' to check.
package config
