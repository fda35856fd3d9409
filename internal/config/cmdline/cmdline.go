// Package cmdline reads Kestrel config keys from the kernel command line.
//
// Grammar (a superset of what the kernel itself accepts):
//
//   - parameters are separated by spaces, tabs or newlines;
//   - double quotes group text containing spaces and are removed wherever
//     they appear: kestrel.hostname="a b" and "kestrel.hostname=a b" are the
//     same; there is no escape character, as in the kernel;
//   - key=value splits at the first '='; a bare key means value "true";
//   - a lone "--" ends the kernel's parameters: what follows is init's
//     argv and is not read (as in the kernel and internal/node/boot/kcmdline);
//   - only kestrel.* and k3os.* keys are config; everything else (console=,
//     root=, quiet) is ignored;
//   - the keys in Reserved are boot switches read by stage 1, not config;
//   - the rest of the key is a config path; config.ParseCmdline types it
//     by the schema (repeated keys build lists, map keys may contain dots).
//
// This package is the grammar only, with no dependency on the schema, so
// that stage 1 can read its boot switches (kestrel.slot) with it too.
//
// Limits: lists of mappings (write_files, users, mounts, wifi, routes)
// cannot be given here. Secrets given here are visible in /proc/cmdline to
// every local user; Kestrel never copies them into an installed config.
package cmdline

import "strings"

// Param is one kernel parameter.
type Param struct {
	Key    string
	Value  string
	Bare   bool // no '=' given
	Offset int  // byte offset of the parameter in the command line
}

// Prefixes are the key prefixes read as config; k3os. is the legacy one.
var Prefixes = []string{"kestrel.", "k3os."}

// Reserved are kestrel./k3os. keys that are boot switches, not config.
// The verity.* keys are the root's dm-verity parameters (internal/verity)
// that the builder and the upgrader put on a slot's boot entry.
var Reserved = map[string]bool{
	"slot": true, "debug": true, "mode": true, "fallback_mode": true, "rescue": true, "rescue_timeout": true,
	"verity.roothash": true, "verity.salt": true, "verity.datablocks": true, "verity.hashoffset": true,
}

// Split splits a command line into parameters, with quotes removed.
func Split(s string) []Param {
	var out []Param
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			break
		}
		start := i
		var b strings.Builder
		inQuote := false
		for i < len(s) && (inQuote || !isSpace(s[i])) {
			if s[i] == '"' {
				inQuote = !inQuote
			} else {
				b.WriteByte(s[i])
			}
			i++
		}
		raw := s[start:i]
		tok := b.String()
		if raw == "--" {
			break
		}
		// The '=' that splits is the first one outside quotes; since quotes
		// are removed, find it in the raw text.
		p := Param{Offset: start}
		if eq := firstUnquoted(raw, '='); eq >= 0 {
			p.Key = strings.ReplaceAll(raw[:eq], `"`, "")
			p.Value = strings.ReplaceAll(raw[eq+1:], `"`, "")
		} else if eq := strings.IndexByte(tok, '='); eq >= 0 {
			p.Key, p.Value = tok[:eq], tok[eq+1:]
		} else {
			p.Key, p.Bare = tok, true
		}
		out = append(out, p)
	}
	return out
}

func firstUnquoted(s string, c byte) int {
	in := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			in = !in
		case s[i] == c && !in:
			return i
		}
	}
	return -1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Lookup returns the value of the last parameter named key.
func Lookup(params []Param, key string) (string, bool) {
	v, found := "", false
	for _, p := range params {
		if p.Key == key {
			v, found = p.Value, true
			if p.Bare {
				v = "true"
			}
		}
	}
	return v, found
}

// ConfigParams returns the parameters that are config: kestrel.* and
// k3os.* keys that are not Reserved, with the prefix removed from Key and
// a bare key's Value set to "true".
func ConfigParams(params []Param) []Param {
	var out []Param
	for _, p := range params {
		path, ok := configPath(p.Key)
		if !ok {
			continue
		}
		p.Key = path
		if p.Bare {
			p.Value = "true"
		}
		out = append(out, p)
	}
	return out
}

func configPath(key string) (string, bool) {
	for _, pre := range Prefixes {
		if rest, ok := strings.CutPrefix(key, pre); ok && rest != "" {
			if Reserved[rest] {
				return "", false
			}
			return rest, true
		}
	}
	return "", false
}
