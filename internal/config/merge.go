package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// How sources merge, later over earlier:
//
//   - mappings merge key by key, recursively: the kestrel: section,
//     sysctl, labels, environment, network.interfaces (and each interface),
//     registries.mirrors/configs. A later source that sets one sysctl does
//     not drop the others. (k3OS replaced whole maps; Kestrel does not.)
//   - lists replace: a later ssh_authorized_keys, write_files, run_cmd,
//     modules, mounts or users list replaces the earlier one as a whole, so
//     a list is always exactly what one source says. An empty list ([])
//     clears an earlier one.
//   - scalars replace.
//   - a null value (key: with nothing after it, or ~) sets nothing: the
//     earlier value stays.
//
// Inside one document, the legacy k3os: section merges first and kestrel:
// on top of it by the same rules, so a k3OS config can be extended with a
// kestrel: section (and sysctls:/sysctl: likewise).

// Result is the merged config and where every value came from.
type Result struct {
	Config  *Config
	Sources []string // names of the merged sources, in order (empty ones included)
	// Errors of sources that were skipped as a whole (invalid YAML, wrong
	// type, unreadable), and unknown keys that were left out of sources
	// that still applied (Errors holding only Error.UnknownKey ones): for
	// the console and `kestrel status`.
	Errors []error

	root   *yaml.Node
	origin map[*yaml.Node]string
}

// Sources collects config sources in merge order. A source that fails to
// read or validate is recorded in Errors and contributes nothing.
type Sources struct {
	docs []*Document
	errs []error
}

// Add parses data as the source called name; it reports whether the
// source applies. A source whose only problems are unknown keys applies
// without them (they are recorded in Errors).
func (s *Sources) Add(name string, data []byte) bool {
	d, err := Parse(name, data)
	if err != nil {
		s.errs = append(s.errs, err)
	}
	if d == nil {
		return false
	}
	s.docs = append(s.docs, d)
	return true
}

// AddDocument adds an already validated document.
func (s *Sources) AddDocument(d *Document) {
	if d != nil {
		s.docs = append(s.docs, d)
	}
}

// AddError records a source that could not be used.
func (s *Sources) AddError(err error) {
	if err != nil {
		s.errs = append(s.errs, err)
	}
}

// AddFile adds the file at path. A missing file is not an error (most
// sources are optional); any other read error is, and so is a file larger
// than MaxSourceSize.
func (s *Sources) AddFile(path string) {
	data, err := ReadSource(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	s.Add(path, data)
}

// ReadSource reads a local config file, at most MaxSourceSize bytes of it
// (a larger file is an error, not read whole). Errors are *Error naming
// the file, except a missing file, which is fs.ErrNotExist.
func ReadSource(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Problem: fmt.Sprintf("cannot read: %v", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSourceSize+1))
	if err != nil {
		return nil, &Error{Pos: Pos{File: path}, Problem: fmt.Sprintf("cannot read: %v", err)}
	}
	if len(data) > MaxSourceSize {
		return nil, &Error{Pos: Pos{File: path}, Problem: fmt.Sprintf("larger than the %d MiB limit of a config source", MaxSourceSize>>20)}
	}
	return data, nil
}

// AddDir adds dir/*.yaml and dir/*.yml in lexical order of their names. A
// missing directory is not an error.
func (s *Sources) AddDir(dir string) {
	files, err := DirFiles(dir)
	if err != nil {
		s.errs = append(s.errs, err)
		return
	}
	for _, f := range files {
		s.AddFile(f)
	}
}

// DirFiles lists the config files of a config.d directory as AddDir reads
// them: *.yaml and *.yml, not hidden, in lexical order. A missing
// directory has none.
func DirFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{Pos: Pos{File: dir}, Problem: fmt.Sprintf("cannot read directory: %v", err)}
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out, nil
}

// Documents returns the valid documents so far, in order.
func (s *Sources) Documents() []*Document { return s.docs }

// Errors returns the problems of the skipped sources so far.
func (s *Sources) Errors() []error { return s.errs }

// Merge merges the valid sources in order; see the rules above.
func (s *Sources) Merge() (*Result, error) {
	r, err := Merge(s.docs...)
	if r != nil {
		r.Errors = append(append([]error(nil), s.errs...), r.Errors...)
	}
	return r, err
}

// Merge merges documents, later over earlier.
func Merge(docs ...*Document) (*Result, error) {
	m := &merger{origin: map[*yaml.Node]string{}}
	r := &Result{}
	var root *yaml.Node
	for _, d := range docs {
		r.Sources = append(r.Sources, d.Name)
		if d.root == nil {
			continue
		}
		m.mark(d.root, d.Name)
		root = m.mergeRec(root, d.root)
	}
	cfg, err := decodeNode(root)
	if err != nil {
		return nil, err
	}
	r.Config, r.root, r.origin = cfg, root, m.origin
	return r, nil
}

type merger struct{ origin map[*yaml.Node]string }

func (m *merger) mark(n *yaml.Node, name string) {
	m.origin[n] = name
	for _, c := range n.Content {
		m.mark(c, name)
	}
}

// mergeNodes merges over onto base without modifying either: mappings key
// by key, anything else replaced.
func mergeNodes(base, over *yaml.Node) *yaml.Node {
	return (*merger)(nil).mergeRec(base, over)
}

func (m *merger) mergeRec(base, over *yaml.Node) *yaml.Node {
	if base == nil {
		return over
	}
	if over == nil {
		return base
	}
	if base.Kind != yaml.MappingNode || over.Kind != yaml.MappingNode {
		return over
	}
	out := copyNode(over)
	out.Content = append([]*yaml.Node(nil), base.Content...)
	index := make(map[string]int, len(out.Content)/2)
	for j := 0; j+1 < len(out.Content); j += 2 {
		index[out.Content[j].Value] = j + 1
	}
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		if j, ok := index[k.Value]; ok {
			out.Content[j] = m.mergeRec(out.Content[j], v)
			continue
		}
		out.Content = append(out.Content, k, v)
		index[k.Value] = len(out.Content) - 1
	}
	if m != nil {
		m.origin[out] = m.origin[over]
	}
	return out
}

// Value is one merged leaf value and where it came from.
type Value struct {
	Path  string // concrete path: kestrel.sysctl.vm.swappiness, write_files[0].path
	Value string
	From  Pos
}

// Values lists every merged leaf value with its source, in document
// order; list items are listed one by one.
func (r *Result) Values() []Value {
	var out []Value
	r.walk(r.root, "", func(path string, n *yaml.Node) {
		out = append(out, Value{Path: path, Value: n.Value, From: r.pos(n)})
	})
	return out
}

// Origin returns where the value at a concrete path came from.
func (r *Result) Origin(path string) (Pos, bool) {
	var p Pos
	found := false
	r.walkAll(r.root, "", func(q string, n *yaml.Node) {
		if q == path {
			p, found = r.pos(n), true
		}
	})
	return p, found
}

func (r *Result) pos(n *yaml.Node) Pos {
	return Pos{File: r.origin[n], Line: n.Line, Col: n.Column}
}

func (r *Result) walk(n *yaml.Node, path string, leaf func(string, *yaml.Node)) {
	r.walkAll(n, path, func(p string, n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			leaf(p, n)
		}
	})
}

func (r *Result) walkAll(n *yaml.Node, path string, visit func(string, *yaml.Node)) {
	if n == nil {
		return
	}
	if path != "" {
		visit(path, n)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			r.walkAll(n.Content[i+1], join(path, n.Content[i].Value), visit)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			r.walkAll(c, fmt.Sprintf("%s[%d]", path, i), visit)
		}
	}
}

// secretPaths are redacted by Show unless asked otherwise.
var secretPaths = map[string]bool{
	"kestrel.password":                                 true,
	"kestrel.token":                                    true,
	"kestrel.k3s.token":                                true,
	"kestrel.k3s.datastore_endpoint":                   true,
	"kestrel.wifi[].passphrase":                        true,
	"kestrel.users[].password":                         true,
	"kestrel.registries.configs.*.auth.password":       true,
	"kestrel.registries.configs.*.auth.auth":           true,
	"kestrel.registries.configs.*.auth.identity_token": true,
}

// IsSecret reports whether a concrete or schema path holds a secret.
func IsSecret(path string) bool { return secretPaths[SchemaPath(path)] }

// Show writes the merged config as YAML, each value followed by a comment
// naming its source (file:line:col). Secrets are hidden (Redact) unless
// showSecrets.
func (r *Result) Show(w io.Writer, showSecrets bool) error {
	if r.root == nil {
		_, err := io.WriteString(w, "{}\n")
		return err
	}
	out := r.annotate(r.root, "", showSecrets)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("show config: %w", err)
	}
	return enc.Close()
}

func (r *Result) annotate(n *yaml.Node, path string, showSecrets bool) *yaml.Node {
	c := copyNode(n)
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	c.Style &^= yaml.FlowStyle
	switch n.Kind {
	case yaml.MappingNode:
		c.Content = nil
		idx := make([]int, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			idx = append(idx, i)
		}
		// Schema keys in schema order, map entries (sysctl names, labels)
		// by name: the output does not depend on which source came first.
		rank := func(i int) (int, string) {
			k := n.Content[i].Value
			if o, ok := schemaOrder()[SchemaPath(join(path, k))]; ok && !strings.HasSuffix(SchemaPath(join(path, k)), "*") {
				return o, ""
			}
			return 1 << 30, k
		}
		sort.SliceStable(idx, func(a, b int) bool {
			ra, ka := rank(idx[a])
			rb, kb := rank(idx[b])
			if ra != rb {
				return ra < rb
			}
			return ka < kb
		})
		for _, i := range idx {
			k := copyNode(n.Content[i])
			k.HeadComment, k.LineComment, k.FootComment = "", "", ""
			c.Content = append(c.Content, k, r.annotate(n.Content[i+1], join(path, k.Value), showSecrets))
		}
	case yaml.SequenceNode:
		c.Content = nil
		for i, it := range n.Content {
			c.Content = append(c.Content, r.annotate(it, fmt.Sprintf("%s[%d]", path, i), showSecrets))
		}
	case yaml.ScalarNode:
		if v := Redact(path, c.Value); !showSecrets && v != c.Value {
			c.Value, c.Style = v, 0
		}
		if c.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 && strings.Count(c.Value, "\n") == 0 {
			c.Style = 0
		}
		c.LineComment = r.pos(n).String()
	}
	return c
}

var schemaOrder = sync.OnceValue(func() map[string]int {
	m := map[string]int{}
	for i, p := range SchemaPaths() {
		m[p] = i
	}
	return m
})
