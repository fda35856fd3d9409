package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	goyaml "github.com/goccy/go-yaml"
	goyamlparser "github.com/goccy/go-yaml/parser"
	"gopkg.in/yaml.v3"
)

// Document is one validated source: its name and its keys, normalised
// (aliases such as k3os: and sysctls: rewritten to their main name, YAML
// anchors expanded, null values dropped). Every value node keeps the line
// and column it had in the source, which is how merged values remember
// where they came from.
type Document struct {
	Name string
	root *yaml.Node // mapping node; nil for an empty document
}

// Empty reports whether the document sets no key.
func (d *Document) Empty() bool { return d.root == nil || len(d.root.Content) == 0 }

// Config decodes the document alone (for `kestrel config validate`).
func (d *Document) Config() (*Config, error) { return decodeNode(d.root) }

// maxNodes bounds the work spent on one document, so that a YAML alias
// bomb costs an error, not the boot.
const maxNodes = 100000

// Parse strictly decodes one YAML document. The name is used in errors and
// provenance (a file path, or a label such as /proc/cmdline). Any problem
// (invalid YAML, a wrong type, an unknown key, a bad value) is reported as
// Errors, all of them at once, each naming file:line:col and the key path;
// a document with errors is never partly returned.
//
// An optional "#cloud-config" first line is accepted (it is a YAML comment).
// Only one YAML document per source is allowed.
func Parse(name string, data []byte) (*Document, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &Document{Name: name}, nil
		}
		return nil, Errors{syntaxError(name, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{Pos: Pos{name, extra.Line, extra.Column}, Problem: "a second YAML document (---) is not allowed in one config source"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(name, data, err)}
	}
	return FromNode(name, &doc)
}

// FromNode validates an already parsed YAML node (a document or a
// mapping); the kernel command-line parser builds its nodes this way.
func FromNode(name string, n *yaml.Node) (*Document, error) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return &Document{Name: name}, nil
		}
		n = n.Content[0]
	}
	w := &walker{file: name}
	root := w.value(n, configType, "", "")
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	if root != nil && root.Kind != yaml.MappingNode {
		root = nil
	}
	return &Document{Name: name, root: root}, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error into an Error. yaml.v3 gives no
// column, and its line is that of the enclosing construct, 0-based for
// parser errors (an unclosed `{` on line 3 is reported as "line 2").
// goccy/go-yaml's parser points at the offending token, so it is asked
// where the problem is; yaml.v3 stays the one decoder. yaml.v3's line
// (with column 1) is kept when goccy finds no error, or places it before
// that line (it may point at the token before the problem, as for
// "a: b\n  c: d", where it names "b").
func syntaxError(name string, data []byte, err error) *Error {
	line, problem := 1, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		problem = m[2]
	}
	var se *goyaml.SyntaxError
	if _, perr := goyamlparser.ParseBytes(data, 0); errors.As(perr, &se) && se.Token != nil && se.Token.Position != nil && se.Token.Position.Line >= line {
		return &Error{Pos: Pos{name, se.Token.Position.Line, se.Token.Position.Column}, Problem: "invalid YAML: " + strings.ReplaceAll(se.Message, "\t", `\t`)}
	}
	return &Error{Pos: Pos{name, line, 1}, Problem: "invalid YAML: " + problem}
}

// walker validates a YAML node tree against the schema types and builds
// the normalised copy.
type walker struct {
	file  string
	errs  Errors
	nodes int
}

func (w *walker) errorf(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{Pos: Pos{w.file, n.Line, n.Column}, Path: path, Problem: fmt.Sprintf(format, args...)})
}

// kindName names what n is for an error at path; a scalar is quoted unless
// path holds secrets (HidesValues).
func kindName(n *yaml.Node, path string) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if HidesValues(path) {
			return "a string (value not shown)"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value validates n as a value of type t and returns its normalised copy,
// or nil for a null value.
func (w *walker) value(n *yaml.Node, t reflect.Type, path, check string) *yaml.Node {
	w.nodes++
	if w.nodes > maxNodes {
		if w.nodes == maxNodes+1 {
			w.errorf(n, path, "document too large (more than %d values, or an alias loop)", maxNodes)
		}
		return nil
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.errorf(n, path, "unknown alias")
			return nil
		}
		return w.value(n.Alias, t, path, check)
	}
	if isNull(n) {
		return nil
	}
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		return w.structValue(n, t, path)
	case reflect.Map:
		return w.mapValue(n, t, path, check)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.errorf(n, path, "expected a list, got %s", kindName(n, path))
			return nil
		}
		out := copyNode(n)
		out.Content = nil
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			v := w.value(item, t.Elem(), p, check)
			if v == nil {
				if isNull(item) {
					w.errorf(item, p, "empty list item")
				}
				continue
			}
			out.Content = append(out.Content, v)
		}
		return out
	default:
		return w.scalar(n, t, path, check)
	}
}

func (w *walker) scalar(n *yaml.Node, t reflect.Type, path, check string) *yaml.Node {
	if n.Kind != yaml.ScalarNode {
		w.errorf(n, path, "expected %s, got %s", typeName(t), kindName(n, path))
		return nil
	}
	if !utf8.ValidString(n.Value) {
		w.errorf(n, path, "value is not valid UTF-8")
		return nil
	}
	out := copyNode(n)
	switch t.Kind() {
	case reflect.String:
		// Any scalar is a string (port: 8080, value: true), as in k3OS.
		out.Tag = "!!str"
		if check != "" {
			if err := runCheck(check, n.Value); err != nil {
				w.errorf(n, path, "%v", err)
				return nil
			}
		}
	default:
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			w.errorf(n, path, "expected %s, got %q", typeName(t), n.Value)
			return nil
		}
		if check != "" {
			if err := runCheck(check, fmt.Sprint(v.Elem().Interface())); err != nil {
				w.errorf(n, path, "%v", err)
				return nil
			}
		}
	}
	return out
}

func typeName(t reflect.Type) string {
	switch deref(t).Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func copyNode(n *yaml.Node) *yaml.Node {
	c := *n
	c.Anchor = ""
	return &c
}

// key checks one mapping key (a non-empty UTF-8 string, not a merge key,
// not given twice) and returns its path.
func (w *walker) key(k *yaml.Node, path string, seen map[string]int) (string, bool) {
	if k.Kind != yaml.ScalarNode || k.Value == "" || !utf8.ValidString(k.Value) {
		w.errorf(k, path, "keys must be non-empty UTF-8 strings")
		return "", false
	}
	p := join(path, k.Value)
	if k.Value == "<<" {
		w.errorf(k, p, "YAML merge keys (<<) are not supported")
		return "", false
	}
	if line, dup := seen[k.Value]; dup {
		w.errorf(k, p, "key given twice (first on line %d)", line)
		return "", false
	}
	seen[k.Value] = k.Line
	return p, true
}

// mapValue validates a map; check, if any, applies to its keys.
func (w *walker) mapValue(n *yaml.Node, t reflect.Type, path, check string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.errorf(n, path, "expected a mapping, got %s", kindName(n, path))
		return nil
	}
	out := copyNode(n)
	out.Content = nil
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p, ok := w.key(k, path, seen)
		if !ok {
			continue
		}
		if check != "" {
			if err := runCheck(check, k.Value); err != nil {
				w.errorf(k, p, "%v", err)
				continue
			}
		}
		nv := w.value(v, t.Elem(), p, "")
		if nv == nil {
			continue
		}
		kc := copyNode(k)
		kc.Tag = "!!str"
		out.Content = append(out.Content, kc, nv)
	}
	return out
}

func (w *walker) structValue(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.errorf(n, path, "expected a mapping, got %s", kindName(n, path))
		return nil
	}
	before := len(w.errs)
	type entry struct{ key, val *yaml.Node }
	byName := map[string][]entry{} // alias entries first, then the main spelling
	seen := map[string]int{}
	var order []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p, ok := w.key(k, path, seen)
		if !ok {
			continue
		}
		f, ok := lookupField(t, k.Value)
		if !ok {
			w.errorf(k, p, "%s", unknownKey(t, k.Value))
			continue
		}
		nv := w.value(v, f.Type, join(path, k.Value), f.Check)
		if nv == nil {
			if f.Required && isNull(v) {
				w.errorf(k, p, "must not be empty")
			}
			continue
		}
		if _, ok := byName[f.Name]; !ok {
			order = append(order, f.Name)
		}
		e := entry{k, nv}
		if k.Value == f.Alias {
			byName[f.Name] = append([]entry{e}, byName[f.Name]...)
		} else {
			byName[f.Name] = append(byName[f.Name], e)
		}
	}
	for _, f := range fieldsOf(t) {
		if f.Required && len(byName[f.Name]) == 0 && seen[f.Name] == 0 {
			w.errorf(n, path, "missing required key %q", f.Name)
		}
	}
	out := copyNode(n)
	out.Content = nil
	for _, name := range order {
		es := byName[name]
		// An alias and its main spelling in one document (k3os: and
		// kestrel:, sysctls: and sysctl:) merge, the main spelling winning.
		val := es[0].val
		for _, e := range es[1:] {
			val = mergeNodes(val, e.val)
		}
		kc := copyNode(es[len(es)-1].key)
		kc.Value = name
		kc.Tag = "!!str"
		out.Content = append(out.Content, kc, val)
	}
	if len(w.errs) == before {
		w.selfCheck(out, t, path)
	}
	return out
}

// unknownKey explains an unknown key: a likely misspelling, or a key that
// belongs to the other level (hostname under kestrel:, modules at the top).
func unknownKey(t reflect.Type, key string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	switch t {
	case configType:
		if f, ok := lookupField(sectionType, key); ok {
			return msg + fmt.Sprintf("; it belongs in the kestrel: section (kestrel.%s)", f.Name)
		}
	case sectionType:
		if f, ok := lookupField(configType, key); ok {
			return msg + fmt.Sprintf("; %s is a top-level key, not part of this section", f.Name)
		}
	}
	if s := suggest(key, fieldNames(t)); s != "" {
		return msg + fmt.Sprintf(", did you mean %q?", s)
	}
	return msg + "; valid keys: " + strings.Join(fieldNames(t), ", ")
}

// problem is a cross-field problem found by a type's own check.
type problem struct {
	field string // key the problem is reported at; "" for the mapping
	msg   string
}

type selfChecker interface{ check() []problem }

func (w *walker) selfCheck(n *yaml.Node, t reflect.Type, path string) {
	v := reflect.New(t)
	sc, ok := v.Interface().(selfChecker)
	if !ok {
		return
	}
	if err := n.Decode(v.Interface()); err != nil {
		w.errorf(n, path, "%v", err)
		return
	}
	for _, p := range sc.check() {
		at, p2 := n, path
		if p.field != "" {
			p2 = join(path, p.field)
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p.field {
					at = n.Content[i+1]
				}
			}
		}
		w.errorf(at, p2, "%s", p.msg)
	}
}

// decodeNode decodes a normalised tree into a Config. It goes through
// yaml.v3's KnownFields decoder as a second line of defence: the walker has
// already rejected unknown keys, so an error here is a bug.
func decodeNode(n *yaml.Node) (*Config, error) {
	c := &Config{}
	if n == nil {
		return c, nil
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode merged config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode merged config: %w", err)
	}
	return c, nil
}
