package config

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// field is one struct field as the schema sees it.
type field struct {
	Name     string // YAML key
	Alias    string // accepted second spelling, or ""
	Index    int
	Type     reflect.Type
	Required bool   // no omitempty in the yaml tag
	Check    string // check tag
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
			Alias:    sf.Tag.Get("alias"),
			Index:    i,
			Type:     sf.Type,
			Required: !strings.Contains(opts, "omitempty"),
			Check:    sf.Tag.Get("check"),
		})
	}
	fieldCache.Store(t, fs)
	return fs
}

// lookupField finds a field by key or alias.
func lookupField(t reflect.Type, key string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.Name == key || (f.Alias != "" && f.Alias == key) {
			return f, true
		}
	}
	return field{}, false
}

func fieldNames(t reflect.Type) []string {
	var n []string
	for _, f := range fieldsOf(t) {
		n = append(n, f.Name)
		if f.Alias != "" {
			n = append(n, f.Alias)
		}
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
