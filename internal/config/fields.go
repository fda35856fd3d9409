package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// field is one struct field as the schema sees it.
type field struct {
	Name     string   // YAML key
	Aliases  []string // other accepted spellings (alias tag, k3OS's names)
	Index    int
	Type     reflect.Type
	Required bool   // no omitempty in the yaml tag
	Check    string // check tag
	Argv     bool   // argv tag: a list of argv elements
}

var fieldCache sync.Map // reflect.Type -> []field

// fieldsOf lists the schema fields of a struct type.
func fieldsOf(t reflect.Type) []field {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		if tag == "-" || !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		fs = append(fs, field{
			Name:     name,
			Aliases:  aliases(name, sf.Tag.Get("alias"), sf.Tag.Get("k3os")),
			Index:    i,
			Type:     sf.Type,
			Required: !strings.Contains(opts, "omitempty"),
			Check:    sf.Tag.Get("check"),
			Argv:     sf.Tag.Get("argv") == "true",
		})
	}
	fieldCache.Store(t, fs)
	return fs
}

// aliases lists a field's other spellings: those of its alias tag
// (comma-separated) and, for a key k3OS had, every spelling k3OS accepted
// for it. k3OS (pkg/config/rename.go, FuzzyNames) matched a key against
// its Go/JSON name (sshAuthorizedKeys, given in the k3os tag), that name
// in lower case (sshauthorizedkeys), in snake case (ssh_authorized_keys),
// and the same three for the name without a final "s" (the singular:
// ssh_authorized_key, datasource, data_source, label). Its camel-case
// names also give the run-together runcmd, bootcmd, initcmd.
//
// Left out on purpose: k3OS also stripped a final "es" (modul,
// write_fil, sysctl from sysctles); those are not words anyone writes, and
// they are reported as unknown keys with a did-you-mean instead.
func aliases(name, tag, k3os string) []string {
	var out []string
	add := func(a string) {
		if a != "" && a != name && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, a := range strings.Split(tag, ",") {
		add(strings.TrimSpace(a))
	}
	if k3os != "" {
		forms := []string{k3os}
		if len(k3os) > 1 && strings.HasSuffix(k3os, "s") {
			forms = append(forms, strings.TrimSuffix(k3os, "s"))
		}
		for _, f := range forms {
			add(f)
			add(strings.ToLower(f))
			add(snakeCase(f))
		}
	}
	return out
}

// snakeCase turns k3OS's camel-case names into YAML keys as k3OS's mapper
// (rancher/mapper convert.ToYAMLKey) does for the names it has: an "_"
// before each upper-case letter, all in lower case. (k3OS's names have no
// acronyms, so ToYAMLKey's acronym rule never applies.)
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// lookupField finds a field by key or alias.
func lookupField(t reflect.Type, key string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.Name == key || slices.Contains(f.Aliases, key) {
			return f, true
		}
	}
	return field{}, false
}

// fieldNames lists the main spellings of t's keys, for messages.
func fieldNames(t reflect.Type) []string {
	var n []string
	for _, f := range fieldsOf(t) {
		n = append(n, f.Name)
	}
	return n
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

var (
	configType  = reflect.TypeOf(Config{})
	sectionType = reflect.TypeOf(Section{})
)

// schemaResolve maps a concrete path to its schema path, following the
// types so that map keys containing dots (sysctl names, VLAN interface
// names) are handled.
func schemaResolve(concrete string) (string, error) {
	if s, ok := resolve(configType, "."+concrete); ok {
		return strings.TrimPrefix(s, "."), nil
	}
	return "", fmt.Errorf("%s: not a config key", concrete)
}

func resolve(t reflect.Type, rest string) (string, bool) {
	t = deref(t)
	if rest == "" {
		return "", true
	}
	switch t.Kind() {
	case reflect.Struct:
		if rest[0] != '.' {
			return "", false
		}
		name := rest[1:]
		tail := ""
		if i := strings.IndexAny(name, ".["); i >= 0 {
			name, tail = name[:i], name[i:]
		}
		f, ok := lookupField(t, name)
		if !ok {
			return "", false
		}
		sub, ok := resolve(f.Type, tail)
		return "." + f.Name + sub, ok
	case reflect.Slice:
		if rest[0] != '[' {
			return "", false
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", false
		}
		sub, ok := resolve(t.Elem(), rest[end+1:])
		return "[]" + sub, ok
	case reflect.Map:
		if rest[0] != '.' || len(rest) < 2 {
			return "", false
		}
		for i := 2; i <= len(rest); i++ {
			if i < len(rest) && rest[i] != '.' && rest[i] != '[' {
				continue
			}
			if sub, ok := resolve(t.Elem(), rest[i:]); ok {
				return ".*" + sub, true
			}
		}
		return "", false
	}
	return "", false
}

// schemaPaths lists the schema path of every struct field reachable from
// t, in declaration order (used by tests, the JSON schema and the docs).
func schemaPaths(t reflect.Type, prefix string, out *[]string) {
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		for _, f := range fieldsOf(t) {
			p := f.Name
			if prefix != "" {
				p = prefix + "." + f.Name
			}
			*out = append(*out, p)
			schemaPaths(f.Type, p, out)
		}
	case reflect.Slice:
		schemaPaths(t.Elem(), prefix+"[]", out)
	case reflect.Map:
		schemaPaths(t.Elem(), prefix+".*", out)
	}
}

// SchemaPaths returns the schema path of every key, in declaration order.
func SchemaPaths() []string {
	var out []string
	schemaPaths(configType, "", &out)
	return out
}
