// Package kcmdline parses the Linux kernel command line (/proc/cmdline) into
// key/value parameters.
//
// It follows the kernel's own splitting rules (parse_args): parameters are
// separated by whitespace, double quotes group a value or a whole parameter
// that contains spaces, and everything after a lone "--" belongs to init and
// is not a kernel parameter. A parameter without "=" has the empty value.
// When a key repeats, the last occurrence wins, as in the kernel.
//
// Deliberately left out: the kernel's equivalence of "-" and "_" in module
// parameter names (Kestrel's own keys are spelled one way, kestrel.slot), and
// backslash escapes, which the kernel does not support either.
package kcmdline

import (
	"fmt"
	"os"
	"strings"
)

// Cmdline is a parsed kernel command line.
type Cmdline struct {
	params map[string]string
	keys   []string // in first-seen order
}

// Read parses the command line stored in the file at path (normally
// /proc/cmdline).
func Read(path string) (Cmdline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cmdline{}, fmt.Errorf("read kernel command line: %w", err)
	}
	return Parse(string(b)), nil
}

// Parse splits a kernel command line.
func Parse(s string) Cmdline {
	c := Cmdline{params: map[string]string{}}
	for _, f := range fields(s) {
		if f == "--" {
			break
		}
		if strings.HasPrefix(f, `"`) { // the whole parameter is quoted
			f = strings.TrimSuffix(f[1:], `"`)
		}
		key, val, _ := strings.Cut(f, "=")
		if key == "" {
			continue
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if _, seen := c.params[key]; !seen {
			c.keys = append(c.keys, key)
		}
		c.params[key] = val
	}
	return c
}

// Get returns the value of key and whether it was present.
func (c Cmdline) Get(key string) (string, bool) {
	v, ok := c.params[key]
	return v, ok
}

// Value returns the value of key, or def when the key is absent or empty.
func (c Cmdline) Value(key, def string) string {
	if v := c.params[key]; v != "" {
		return v
	}
	return def
}

// Has reports whether key is present, with or without a value.
func (c Cmdline) Has(key string) bool {
	_, ok := c.params[key]
	return ok
}

// WithPrefix returns the parameters whose key starts with prefix (for
// example "kestrel."), in the order they first appeared.
func (c Cmdline) WithPrefix(prefix string) [][2]string {
	var out [][2]string
	for _, k := range c.keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, [2]string{k, c.params[k]})
		}
	}
	return out
}

// fields splits on unquoted whitespace, keeping the quotes in place so that
// Parse can tell a quoted value from a quoted key.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inField := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inField = true
			cur.WriteRune(r)
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if inField {
				out = append(out, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			inField = true
			cur.WriteRune(r)
		}
	}
	if inField {
		out = append(out, cur.String())
	}
	return out
}
