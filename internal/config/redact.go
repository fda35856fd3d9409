package config

import (
	"net/url"
	"strings"
)

// Redacted is what `kestrel config show` prints in place of a hidden value.
const Redacted = "<redacted>"

// Redact returns the value at a concrete path (kestrel.k3s_args[1]) as
// `kestrel config show` prints it without --secrets:
//   - a secret (IsSecret: passwords, tokens, the datastore endpoint) is
//     Redacted whole;
//   - an environment variable's value is Redacted (proxies carry
//     credentials, K3S_TOKEN is a token);
//   - a k3s argument keeps its flag name but not its value: --token=x
//     becomes --token=<redacted>, a bare value (the x of "--token x") is
//     Redacted, and only a leading server or agent role is kept;
//   - a URL (config_url, or any http or https value) loses its user info
//     and its query, which is where tokens ride; a config_url that does
//     not parse is Redacted whole.
//
// Limits: write_files contents and commands (run_cmd, boot_cmd) are shown
// as written; a secret inside them is the config author's to keep out.
func Redact(path, value string) string {
	sp := SchemaPath(path)
	switch {
	case IsSecret(path), sp == "kestrel.environment.*":
		return Redacted
	case sp == "kestrel.k3s_args[]" || sp == "kestrel.k3s.args[]":
		return redactArg(path, value)
	case sp == "kestrel.config_url" || sp == "kestrel.install.config_url":
		return redactURL(value)
	case strings.HasPrefix(value, "http://") || strings.HasPrefix(value, "https://"):
		return redactURL(value)
	}
	return value
}

// HidesValues reports whether a value at path, or every value under it
// (environment, k3s arguments, a registry's auth block), would be
// redacted: an error about a misplaced value there (a string where a list
// or mapping belongs) must not quote it.
func HidesValues(path string) bool {
	return Redact(path, "x") != "x" || Redact(path+"[0]", "x") != "x" || Redact(path+".x", "x") != "x" ||
		SchemaPath(path) == "kestrel.registries.configs.*.auth"
}

func redactArg(path, v string) string {
	if strings.HasPrefix(v, "-") {
		if i := strings.IndexByte(v, '='); i >= 0 {
			return v[:i+1] + Redacted
		}
		return v // a flag name, or a boolean flag
	}
	if strings.HasSuffix(path, "k3s_args[0]") && (v == "server" || v == "agent") {
		return v
	}
	return Redacted
}

func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Opaque != "" {
		return Redacted
	}
	if u.User == nil && u.RawQuery == "" && !u.ForceQuery {
		return v
	}
	s := u.Scheme + "://"
	if u.User != nil {
		s += Redacted + "@"
	}
	s += u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		s += "?" + Redacted
	}
	if u.Fragment != "" {
		s += "#" + u.EscapedFragment()
	}
	return s
}
