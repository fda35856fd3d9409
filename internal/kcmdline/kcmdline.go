// Package kcmdline is the grammar of the Linux kernel command line
// (/proc/cmdline): the one parser for it, used by stage 1 and stage 2 for
// their boot switches (kestrel.slot, kestrel.debug) and by internal/config
// for config keys (kestrel.hostname=..., k3os.* too).
//
// It splits the line as the kernel's parse_args does (next_arg in
// kernel/params.c), so that a parameter means to Kestrel what it means to
// the kernel:
//
//   - parameters are separated by unquoted whitespace (space, \t, \n, \v,
//     \f, \r); a double quote toggles quoting wherever it appears;
//   - a parameter splits into key and value at its first '=' (quoted or
//     not; an '=' as the very first character does not split); without
//     one, the parameter is bare (Param.Bare) and has no value;
//   - quotes are removed in two places only: a quote opening the whole
//     parameter ("kestrel.hostname=a b") or opening the value
//     (kestrel.hostname="a b"), each with the parameter's last character
//     if that is a quote. Quotes anywhere else stay: k="a"b gives the
//     value a"b. There is no escape character;
//   - a bare "--" (quoted or not) ends the kernel's parameters: what
//     follows is init's argv and is not returned.
//
// Every occurrence is kept, in order, with its byte offset in the line:
// Get gives the last one (last wins, as in the kernel), All every value
// of a key, so that a caller can turn a repeated key into a list
// (k3os.dns_nameserver=1.1.1.1 k3os.dns_nameserver=8.8.8.8).
//
// This replaces two parsers that disagreed. Where they did, the kernel's
// rule won, because the kernel has already split the line its way before
// anyone reads /proc/cmdline, and a value must not mean one thing to
// stage 1 and another to the config: config's old parser removed quotes
// anywhere (k="a"b"c d" gave "abc d", now a"b"c d) and split "a=b"=c
// at a quoted '=' (key a=b; now key a, value b"=c, as the kernel), and
// it read a quoted "--" as a parameter (now it ends the line, as in the
// kernel). A bare key meaning "true" is config's reading (Param.Bare),
// not the grammar's.
//
// Deliberately left out: the kernel's equivalence of "-" and "_" in
// parameter names (Kestrel's keys are spelled one way); the kernel also
// counts byte 0xA0 (Latin-1 no-break space) as whitespace, which would
// split UTF-8 text, so it is not. A parameter with an empty key (a lone
// pair of quotes) is dropped.
package kcmdline

import (
	"fmt"
	"os"
	"strings"
)

// Param is one kernel parameter.
type Param struct {
	Key    string
	Value  string // "" when Bare
	Bare   bool   // no '=' given
	Offset int    // byte offset of the parameter in the command line
}

// Cmdline is a parsed command line: every parameter, in order.
type Cmdline []Param

// Read parses the command line stored in the file at path (normally
// /proc/cmdline).
func Read(path string) (Cmdline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	return Parse(string(b)), nil
}

// Parse splits a kernel command line.
func Parse(s string) Cmdline {
	var c Cmdline
	for i := skipSpaces(s, 0); i < len(s); {
		p, next := nextArg(s, i)
		i = skipSpaces(s, next)
		if p.Bare && p.Key == "--" {
			break
		}
		if p.Key != "" {
			c = append(c, p)
		}
	}
	return c
}

// Get returns the value of the last parameter named key and whether
// there was one.
func (c Cmdline) Get(key string) (string, bool) {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].Key == key {
			return c[i].Value, true
		}
	}
	return "", false
}

// Value returns the value of key (the last one), or def when the key is
// absent or its value empty.
func (c Cmdline) Value(key, def string) string {
	if v, _ := c.Get(key); v != "" {
		return v
	}
	return def
}

// Has reports whether key is present, with or without a value.
func (c Cmdline) Has(key string) bool {
	_, ok := c.Get(key)
	return ok
}

// All returns the values of every occurrence of key, in order.
func (c Cmdline) All(key string) []string {
	var out []string
	for _, p := range c {
		if p.Key == key {
			out = append(out, p.Value)
		}
	}
	return out
}

// WithPrefix returns every parameter whose key starts with prefix (for
// example "kestrel."), repeats included, in order.
func (c Cmdline) WithPrefix(prefix string) Cmdline {
	var out Cmdline
	for _, p := range c {
		if strings.HasPrefix(p.Key, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// nextArg reads the parameter starting at s[start] (not whitespace) the
// way the kernel's next_arg does, and returns it with the index just
// after it.
func nextArg(s string, start int) (Param, int) {
	i := start
	quoted := s[i] == '"' // the whole parameter is quoted
	inQuote := quoted
	if quoted {
		i++
	}
	keyStart, equals, end := i, -1, i
	for ; end < len(s); end++ {
		if isSpace(s[end]) && !inQuote {
			break
		}
		if equals < 0 && s[end] == '=' && end > keyStart {
			equals = end
		}
		if s[end] == '"' {
			inQuote = !inQuote
		}
	}
	p := Param{Offset: start}
	lastIsQuote := end > keyStart && s[end-1] == '"'
	if equals < 0 {
		keyEnd := end
		if quoted && lastIsQuote {
			keyEnd--
		}
		p.Key, p.Bare = s[keyStart:keyEnd], true
		return p, end
	}
	p.Key = s[keyStart:equals]
	valStart, valEnd := equals+1, end
	valueQuoted := valStart < end && s[valStart] == '"'
	if valueQuoted {
		valStart++
	}
	if (quoted || valueQuoted) && lastIsQuote {
		valEnd = max(valEnd-1, valStart)
	}
	p.Value = s[valStart:max(valEnd, valStart)]
	return p, end
}

func skipSpaces(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// isSpace is the kernel's isspace for ASCII.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
