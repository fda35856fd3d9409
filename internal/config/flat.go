package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// FlatEntry is one key=value setting from a flat source such as the
// kernel command line: Path is the key without its prefix
// ("hostname", "k3s.role", "sysctl.vm.swappiness"), Col its column.
type FlatEntry struct {
	Path  string
	Value string
	Col   int
}

// FromFlat builds a document from flat key=value settings, typed by the
// schema:
//
//   - a path whose first element is a top-level key (hostname,
//     ssh_authorized_keys, write_files, init_cmd, boot_cmd, run_cmd) is
//     that key; any other path is under the kestrel: section;
//   - map keys may contain dots (sysctl.net.ipv4.ip_forward=1 sets the
//     sysctl "net.ipv4.ip_forward");
//   - each setting of a list key appends one item, so repeated keys build
//     a list; a repeated scalar key keeps the last value;
//   - lists of mappings (write_files, users, mounts, wifi, routes) cannot
//     be written flat and are reported as errors;
//   - k3OS's spellings are accepted as in files (dns_nameserver=, a
//     singular repeated, builds dns_nameservers).
//
// The result is validated like any document; errors name the column. As
// with Parse, unknown keys are returned next to the document, which
// applies without them.
func FromFlat(name string, entries []FlatEntry) (*Document, error) {
	root := &yaml.Node{Kind: yaml.MappingNode, Line: 1, Column: 1}
	var errs Errors
	for _, e := range entries {
		path := e.Path
		first, _, _ := strings.Cut(path, ".")
		_, top := lookupField(configType, first)
		_, inSection := lookupField(sectionType, first)
		if !top && !inSection {
			msg := fmt.Sprintf("unknown key %q", first)
			if s := suggest(first, append(fieldNames(configType), fieldNames(sectionType)...)); s != "" {
				msg += fmt.Sprintf(", did you mean %q?", s)
			}
			errs = append(errs, &Error{Pos: Pos{name, 1, e.Col}, Path: "kestrel." + path, Problem: msg, UnknownKey: true})
			continue
		}
		if !top {
			path = "kestrel." + path
		}
		if err := setFlat(root, configType, path, e); err != nil {
			var uk *unknownKeyError
			errs = append(errs, &Error{Pos: Pos{name, 1, e.Col}, Path: path, Problem: err.Error(), UnknownKey: errors.As(err, &uk)})
		}
	}
	if !errs.OnlyUnknownKeys() {
		return nil, errs
	}
	d, err := FromNode(name, root)
	if d == nil || len(errs) == 0 {
		return d, err
	}
	var more Errors
	errors.As(err, &more)
	return d, append(errs, more...)
}

// unknownKeyError is setFlat's error for a key the schema does not have.
type unknownKeyError struct{ msg string }

func (e *unknownKeyError) Error() string { return e.msg }

// setFlat puts one entry into the node tree at path, following type t.
func setFlat(n *yaml.Node, t reflect.Type, path string, e FlatEntry) error {
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		key, rest, _ := strings.Cut(path, ".")
		f, ok := lookupField(t, key)
		if !ok {
			return &unknownKeyError{unknownKey(t, "", key)}
		}
		return setFlat(child(n, f.Name, f.Type, e.Col), f.Type, rest, e)
	case reflect.Map:
		if path == "" {
			return fmt.Errorf("a map key is needed after the name")
		}
		elem := deref(t.Elem())
		if elem.Kind() != reflect.Struct {
			return setFlat(child(n, path, elem, e.Col), elem, "", e)
		}
		// Map of mappings (interfaces, mirrors): the key is the shortest
		// prefix after which the rest resolves ("eth0.10.mtu" -> "eth0.10").
		for i := 0; i <= len(path); i++ {
			if i < len(path) && path[i] != '.' {
				continue
			}
			if _, ok := resolve(elem, path[i:]); ok && i < len(path) {
				return setFlat(child(n, path[:i], elem, e.Col), elem, path[i+1:], e)
			}
		}
		return fmt.Errorf("no key of %s matches %q", typeName(elem), path)
	case reflect.Slice:
		if deref(t.Elem()).Kind() == reflect.Struct || deref(t.Elem()).Kind() == reflect.Map {
			return fmt.Errorf("a list of mappings cannot be set on the kernel command line; use a config file")
		}
		if path != "" {
			return fmt.Errorf("a list has no sub-keys")
		}
		n.Content = append(n.Content, scalarNode(deref(t.Elem()), e))
		return nil
	default:
		if path != "" {
			return fmt.Errorf("%s has no sub-keys", typeName(t))
		}
		*n = *scalarNode(t, e)
		return nil
	}
}

func scalarNode(t reflect.Type, e FlatEntry) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: e.Value, Line: 1, Column: e.Col}
	if t.Kind() == reflect.String {
		n.Tag = "!!str"
	}
	return n
}

// child returns the value node under key in mapping n, creating it.
func child(n *yaml.Node, key string, t reflect.Type, col int) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: 1, Column: col}
	v := &yaml.Node{Line: 1, Column: col}
	switch deref(t).Kind() {
	case reflect.Struct, reflect.Map:
		v.Kind = yaml.MappingNode
	case reflect.Slice:
		v.Kind = yaml.SequenceNode
	default:
		v.Kind = yaml.ScalarNode
	}
	n.Content = append(n.Content, k, v)
	return v
}
