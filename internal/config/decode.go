package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
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

// MaxSourceSize bounds one config source, local or fetched (datasources
// apply the same 16 MiB to what they fetch): a larger file is refused
// before it is parsed.
const MaxSourceSize = 16 << 20

// Parse strictly decodes one YAML document. The name is used in errors and
// provenance (a file path, or a label such as /proc/cmdline). Any problem
// (invalid YAML, a wrong type, an unknown key, a bad value) is reported as
// Errors, all of them at once, each naming file:line:col and the key path.
//
// When every problem is an unknown key (Error.UnknownKey), the document is
// returned too, without those keys (and without any list entry that held
// one), next to the errors: the boot applies it, `kestrel config
// validate` fails on the errors. Any other problem returns no document.
//
// An optional "#cloud-config" first line is accepted (it is a YAML comment).
// Only one YAML document per source is allowed.
func Parse(name string, data []byte) (*Document, error) {
	if len(data) > MaxSourceSize {
		return nil, Errors{{Pos: Pos{File: name}, Problem: fmt.Sprintf("config source of %d bytes is larger than the %d MiB limit", len(data), MaxSourceSize>>20)}}
	}
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
	if !w.errs.OnlyUnknownKeys() {
		return nil, w.errs
	}
	if root != nil && root.Kind != yaml.MappingNode {
		root = nil
	}
	d := &Document{Name: name, root: root}
	if len(w.errs) > 0 {
		return d, w.errs
	}
	return d, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error into an Error. yaml.v3 gives no
// column, and its line is that of the enclosing construct, 0-based for
// parser errors (an unclosed `{` on line 3 is reported as "line 2").
// goccy/go-yaml's parser points at the offending token, so it is asked
// where the problem is; yaml.v3 stays the one decoder. yaml.v3's line
// (with column 1) is kept when goccy finds no error, or places it before
// that line (it may point at the token before the problem, as for
// "a: b\n  c: d", where it names "b"), or is not asked (see locateSyntax).
func syntaxError(name string, data []byte, err error) *Error {
	line, problem := 1, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		problem = m[2]
	}
	if se := locateSyntax(data, locateTimeout); se != nil && se.Token != nil && se.Token.Position != nil && se.Token.Position.Line >= line {
		return &Error{Pos: Pos{name, se.Token.Position.Line, se.Token.Position.Column}, Problem: "invalid YAML: " + strings.ReplaceAll(se.Message, "\t", `\t`)}
	}
	return &Error{Pos: Pos{name, line, 1}, Problem: "invalid YAML: " + problem}
}

// Bounds on asking goccy/go-yaml where a syntax error is. Its parser is
// super-linear in nesting depth (80 KB of "[" took 72 s on a node, and
// PID 1 waits for it); within these bounds it takes well under 100 ms on
// the slowest input measured (64 KiB at depth 64). Past them the error
// keeps yaml.v3's line, and column 1: only the column is lost.
const (
	locateMaxSize  = 64 << 10
	locateMaxDepth = 64
	locateTimeout  = 2 * time.Second
)

// locateSyntax runs goccy/go-yaml's parser on data, within the bounds
// above; nil when it is not asked, finds nothing or runs out of time. A
// parse that outlives the timeout finishes in the background (it cannot
// be stopped), which the size and depth bounds keep short.
func locateSyntax(data []byte, timeout time.Duration) *goyaml.SyntaxError {
	if len(data) > locateMaxSize || nestingDepth(data) > locateMaxDepth {
		return nil
	}
	done := make(chan *goyaml.SyntaxError, 1)
	go func() {
		var se *goyaml.SyntaxError
		defer func() {
			if recover() != nil { // this runs in PID 1: a parser bug costs the column only
				done <- nil
			}
		}()
		if _, err := goyamlparser.ParseBytes(data, 0); !errors.As(err, &se) {
			se = nil
		}
		done <- se
	}()
	select {
	case se := <-done:
		return se
	case <-time.After(timeout):
		return nil
	}
}

// nestingDepth estimates how deeply data nests: flow brackets still open,
// plus one level per two columns of block indentation ("- " included).
// Brackets inside quoted strings count too; an overestimate only skips
// goccy.
func nestingDepth(data []byte) int {
	depth, flow := 0, 0
	lineStart, indent := true, 0
	for _, c := range data {
		switch {
		case c == '\n':
			lineStart, indent = true, 0
			continue
		case lineStart && (c == ' ' || c == '-'):
			indent++
			continue
		}
		lineStart = false
		switch c {
		case '[', '{':
			flow++
		case ']', '}':
			if flow > 0 {
				flow--
			}
		}
		depth = max(depth, flow+indent/2)
	}
	return depth
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

// unknownf records an unknown key (see Error.UnknownKey).
func (w *walker) unknownf(n *yaml.Node, path, format string, args ...any) {
	w.errorf(n, path, format, args...)
	w.errs[len(w.errs)-1].UnknownKey = true
}

// hard counts the errors that are not unknown keys.
func (w *walker) hard() int {
	n := 0
	for _, e := range w.errs {
		if !e.UnknownKey {
			n++
		}
	}
	return n
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
		if n.Kind == yaml.ScalarNode && deref(t.Elem()).Kind() == reflect.String {
			// k3OS's coercion: a scalar is a one-item list (datasource: aws).
			item := copyNode(n)
			n = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line, Column: n.Column, Content: []*yaml.Node{item}}
		}
		if n.Kind != yaml.SequenceNode {
			w.errorf(n, path, "expected a list, got %s", kindName(n, path))
			return nil
		}
		out := copyNode(n)
		out.Content = nil
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			before := len(w.errs)
			v := w.value(item, t.Elem(), p, check)
			if v == nil {
				if isNull(item) {
					w.errorf(item, p, "empty list item")
				}
				continue
			}
			if len(w.errs) > before && w.errs[before:].OnlyUnknownKeys() {
				// An entry with an unknown key is left out whole: a
				// write_files entry without its cloud-init "append" or
				// "compression" would write the wrong bytes.
				for _, e := range w.errs[before:] {
					e.Problem += fmt.Sprintf(" (at boot the whole entry %s is left out)", p)
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
	if n.Kind == yaml.SequenceNode && t.Kind() == reflect.String && cmdItem[SchemaPath(path)] {
		w.errorf(n, path, "cloud-init's argv-list form of a command is not supported; Kestrel's equivalent is one shell command per item (\"ls -l /\")")
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		w.errorf(n, path, "expected %s, got %s", typeName(t), kindName(n, path))
		return nil
	}
	if n.ShortTag() == "!!binary" && t.Kind() == reflect.String {
		return w.binary(n, path, check)
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

// cmdItem are the schema paths of command list items (spelt any way:
// runcmd, run_cmd).
var cmdItem = map[string]bool{"init_cmd[]": true, "boot_cmd[]": true, "run_cmd[]": true}

// binary validates a YAML !!binary scalar: its value is base64 (line breaks
// and spaces allowed), decoded to bytes that a string field then holds as
// they are (write_files content: an ELF, or gzip data that encoding:
// gzip then inflates). The normalised node keeps the !!binary tag, so the
// decoder, not this code, turns it into bytes. Checks run on the bytes.
func (w *walker) binary(n *yaml.Node, path, check string) *yaml.Node {
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(n.Value), ""))
	if err != nil {
		w.errorf(n, path, "invalid !!binary value (base64): %v", err)
		return nil
	}
	if check != "" {
		if err := runCheck(check, string(b)); err != nil {
			w.errorf(n, path, "%v", err)
			return nil
		}
	}
	out := copyNode(n)
	out.Tag = "!!binary"
	out.Style = 0
	out.Value = base64.StdEncoding.EncodeToString(b)
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
	before := w.hard()
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
			w.unknownf(k, p, "%s", unknownKey(t, path, k.Value))
			continue
		}
		if f.Argv && v.Kind == yaml.ScalarNode && strings.ContainsAny(strings.TrimSpace(v.Value), " \t") {
			// k3s arguments carry tokens: flags are shown, values are not.
			words := strings.Fields(v.Value)
			for i, wd := range words {
				words[i] = Redact(fmt.Sprintf("%s[%d]", p, i), wd)
			}
			w.errorf(v, p, "expected a list of arguments, got the single string %q (k3OS would have passed it to k3s as one argument); write one argument per item: [%s]", strings.Join(words, " "), strings.Join(words, ", "))
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
		if k.Value != f.Name {
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
	if w.hard() == before {
		w.selfCheck(out, t, path)
	}
	return out
}

// unknownKey explains an unknown key at path: a cloud-init key Kestrel
// does not implement (with Kestrel's equivalent), a likely misspelling, or
// a key that belongs to the other level (hostname under kestrel:, modules
// at the top).
func unknownKey(t reflect.Type, path, key string) string {
	if m, ok := cloudInitKeys[SchemaPath(path)+"|"+key]; ok {
		return m
	}
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
