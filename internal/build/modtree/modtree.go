// Package modtree picks kernel modules out of a kernel's module tree: it
// reads each module's .modinfo section (depends=, softdep=, alias=),
// resolves the dependency closure of a list of names or globs, orders it
// so every module follows its dependencies, and installs the chosen
// modules into an image together with the index files a loader needs
// (modules.dep, modules.alias, modules.softdep, modules.order,
// modules.builtin).
//
// It exists because Debian's kernel packages ship no modules.dep, and it
// works from .modinfo rather than depmod's symbol resolution so that it
// behaves the same for every target arch on any host; the tests cross-check
// its modules.dep against `depmod -n` on the real kernel.
//
// Limits: module files must be uncompressed .ko (Debian bookworm's are);
// softdeps are followed only when they name a module by its exact name,
// never through aliases ("pre: crc32c" would otherwise drag in
// crc32c-intel, which fails to load on CPUs without SSE4.2: list
// crc32c_generic explicitly instead); module signatures and vermagic are
// not checked.
package modtree

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Module is one loadable module of a tree.
type Module struct {
	Name     string   // normalised: '-' replaced by '_'
	Path     string   // relative to the tree, e.g. kernel/fs/ext4/ext4.ko
	Depends  []string // normalised names, from depends=
	SoftPre  []string // normalised names from softdep=pre:, as written
	SoftPost []string
	Aliases  []string
}

// InstallPath is where Install puts the module: Path with the file named
// after the canonical module name. Some Debian files mix '-' and '_'
// (nls_iso8859-1.ko, poly1305-x86_64.ko); u-root's kmodule looks a name
// up as all-'-' or all-'_' only and would never find them.
func (m *Module) InstallPath() string {
	return path.Join(path.Dir(m.Path), m.Name+".ko")
}

// Tree is the module tree of one kernel release.
type Tree struct {
	Dir     string // .../lib/modules/<release>
	Modules map[string]*Module
	// Builtin holds normalised names of modules built into the kernel
	// (modules.builtin); asking for one is not an error, it just needs no
	// loading.
	Builtin map[string]bool
}

// Normalize returns the kernel's canonical module name: the file name
// without .ko, with every '-' replaced by '_'.
func Normalize(name string) string {
	return strings.ReplaceAll(strings.TrimSuffix(path.Base(name), ".ko"), "-", "_")
}

// Scan reads every .ko under dir (a lib/modules/<release> directory) and
// its modules.builtin.
func Scan(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, Modules: map[string]*Module{}, Builtin: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		m, err := readModule(p)
		if err != nil {
			return fmt.Errorf("module %s: %w", rel, err)
		}
		m.Path = filepath.ToSlash(rel)
		if prev, dup := t.Modules[m.Name]; dup {
			return fmt.Errorf("module %s: same name as %s", rel, prev.Path)
		}
		t.Modules[m.Name] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modules in %s: %w", dir, err)
	}
	if len(t.Modules) == 0 {
		return nil, fmt.Errorf("scan modules in %s: no .ko files", dir)
	}
	builtin, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("scan modules in %s: %w", dir, err)
	}
	for _, line := range strings.Fields(string(builtin)) {
		t.Builtin[Normalize(line)] = true
	}
	return t, nil
}

// readModule parses the .modinfo section of one module file.
func readModule(file string) (*Module, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfo(Normalize(file), data), nil
}

// parseModinfo reads NUL-separated key=value strings. name= wins over the
// file name when present.
func parseModinfo(name string, data []byte) *Module {
	m := &Module{Name: name}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = Normalize(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, Normalize(d))
				}
			}
		case "softdep":
			pre, post := parseSoftdep(v)
			m.SoftPre = append(m.SoftPre, pre...)
			m.SoftPost = append(m.SoftPost, post...)
		case "alias":
			m.Aliases = append(m.Aliases, v)
		}
	}
	return m
}

// parseSoftdep reads "pre: a b post: c".
func parseSoftdep(v string) (pre, post []string) {
	var cur *[]string
	for _, w := range strings.Fields(v) {
		switch w {
		case "pre:":
			cur = &pre
		case "post:":
			cur = &post
		default:
			if cur != nil {
				*cur = append(*cur, Normalize(w))
			}
		}
	}
	return pre, post
}

// Selection is a resolved, ordered set of modules.
type Selection struct {
	// Modules are in load order: every module after its dependencies and
	// after the modules its softdep= puts before it.
	Modules []*Module
	// Builtin lists requested names the kernel has built in.
	Builtin []string
	// Missing lists optional names found neither as module nor built in.
	Missing []string
}

// Names returns the selection's module names in load order.
func (s Selection) Names() []string {
	out := make([]string, len(s.Modules))
	for i, m := range s.Modules {
		out[i] = m.Name
	}
	return out
}

// Resolve expands names and globs (path.Match syntax over normalised
// names) to their dependency closure in load order. A required name that
// matches nothing, neither module nor built-in, is an error; an optional
// one is recorded in Missing.
func (t *Tree) Resolve(required, optional []string) (Selection, error) {
	var sel Selection
	r := resolver{t: t, state: map[string]int{}, sel: &sel}
	var missing []string
	for i, list := range [][]string{required, optional} {
		for _, pat := range list {
			names, builtin, err := t.match(pat)
			if err != nil {
				return sel, err
			}
			if len(names) == 0 && !builtin {
				if i == 0 {
					missing = append(missing, pat)
				} else {
					sel.Missing = append(sel.Missing, pat)
				}
				continue
			}
			if builtin {
				sel.Builtin = append(sel.Builtin, Normalize(pat))
			}
			for _, n := range names {
				if err := r.visit(n, []string{n}); err != nil {
					return sel, err
				}
			}
		}
	}
	if len(missing) > 0 {
		return sel, fmt.Errorf("modules not in kernel %s (neither module nor built in): %s",
			filepath.Base(t.Dir), strings.Join(missing, ", "))
	}
	return sel, nil
}

// match returns the module names a pattern selects, sorted, and whether it
// names a built-in module.
func (t *Tree) match(pat string) ([]string, bool, error) {
	norm := strings.ReplaceAll(pat, "-", "_")
	if !strings.ContainsAny(norm, "*?[") {
		if _, ok := t.Modules[norm]; ok {
			return []string{norm}, false, nil
		}
		return nil, t.Builtin[norm], nil
	}
	var out []string
	for name := range t.Modules {
		ok, err := path.Match(norm, name)
		if err != nil {
			return nil, false, fmt.Errorf("module pattern %q: %w", pat, err)
		}
		if ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, false, nil
}

type resolver struct {
	t     *Tree
	state map[string]int // 0 unseen, 1 in progress, 2 done
	sel   *Selection
}

// visit appends name after its dependencies (depth-first, post-order).
func (r *resolver) visit(name string, chain []string) error {
	switch r.state[name] {
	case 2:
		return nil
	case 1:
		return fmt.Errorf("module dependency cycle: %s", strings.Join(chain, " -> "))
	}
	m, ok := r.t.Modules[name]
	if !ok {
		if r.t.Builtin[name] {
			return nil
		}
		return fmt.Errorf("module %s needs %s, which the kernel has neither as module nor built in",
			chain[0], strings.Join(chain[1:], " -> "))
	}
	r.state[name] = 1
	for _, d := range m.SoftPre {
		// Followed only when it names a module that is not already being
		// resolved: a softdep is an ordering wish, never a cycle error.
		if _, isMod := r.t.Modules[d]; isMod && r.state[d] == 0 {
			if err := r.visit(d, append(chain, d)); err != nil {
				return err
			}
		}
	}
	for _, d := range m.Depends {
		if err := r.visit(d, append(chain, d)); err != nil {
			return err
		}
	}
	r.state[name] = 2
	r.sel.Modules = append(r.sel.Modules, m)
	return nil
}

// Install copies the selection's module files under dest (the
// lib/modules/<release> directory of an image tree, created if needed),
// each at its InstallPath, and
// writes modules.dep, modules.alias, modules.softdep, modules.order and
// modules.builtin for exactly those modules.
func (t *Tree) Install(sel Selection, dest string) error {
	for _, m := range sel.Modules {
		if err := copyFile(filepath.Join(t.Dir, m.Path), filepath.Join(dest, m.InstallPath())); err != nil {
			return fmt.Errorf("install module %s: %w", m.Name, err)
		}
	}
	files := map[string][]byte{
		"modules.dep":     t.DepFile(sel),
		"modules.alias":   aliasFile(sel),
		"modules.softdep": softdepFile(sel),
		"modules.order":   orderFile(sel),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dest, name), data, 0o644); err != nil {
			return fmt.Errorf("install modules: %w", err)
		}
	}
	// modules.builtin(.modinfo) describe the kernel, not the selection:
	// loaders read them to treat built-in names as loaded.
	for _, name := range []string{"modules.builtin", "modules.builtin.modinfo"} {
		src := filepath.Join(t.Dir, name)
		if _, err := os.Stat(src); os.IsNotExist(err) {
			continue
		}
		if err := copyFile(src, filepath.Join(dest, name)); err != nil {
			return fmt.Errorf("install modules: %w", err)
		}
	}
	return nil
}

// DepFile renders modules.dep for the selection in depmod's format: one
// line per module, "path: dep paths" (InstallPaths), dependencies listed transitively
// with the one to load last first (modprobe loads them right to left).
func (t *Tree) DepFile(sel Selection) []byte {
	var b bytes.Buffer
	for _, m := range sel.Modules {
		deps := t.hardClosure(m.Name)
		b.WriteString(m.InstallPath() + ":")
		for i := len(deps) - 1; i >= 0; i-- {
			b.WriteString(" " + t.Modules[deps[i]].InstallPath())
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// hardClosure returns the transitive depends= of name (not name itself)
// in load order, skipping built-ins.
func (t *Tree) hardClosure(name string) []string {
	var out []string
	seen := map[string]bool{name: true}
	var walk func(string)
	walk = func(n string) {
		m, ok := t.Modules[n]
		if !ok {
			return
		}
		for _, d := range m.Depends {
			if seen[d] {
				continue
			}
			seen[d] = true
			walk(d)
			if _, ok := t.Modules[d]; ok {
				out = append(out, d)
			}
		}
	}
	walk(name)
	return out
}

func aliasFile(sel Selection) []byte {
	var b bytes.Buffer
	b.WriteString("# Aliases extracted from modules themselves.\n")
	for _, m := range sortedByName(sel.Modules) {
		for _, a := range m.Aliases {
			fmt.Fprintf(&b, "alias %s %s\n", a, m.Name)
		}
	}
	return b.Bytes()
}

func softdepFile(sel Selection) []byte {
	var b bytes.Buffer
	b.WriteString("# Soft dependencies extracted from modules themselves.\n")
	for _, m := range sortedByName(sel.Modules) {
		if len(m.SoftPre)+len(m.SoftPost) == 0 {
			continue
		}
		fmt.Fprintf(&b, "softdep %s", m.Name)
		if len(m.SoftPre) > 0 {
			fmt.Fprintf(&b, " pre: %s", strings.Join(m.SoftPre, " "))
		}
		if len(m.SoftPost) > 0 {
			fmt.Fprintf(&b, " post: %s", strings.Join(m.SoftPost, " "))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func orderFile(sel Selection) []byte {
	var b bytes.Buffer
	for _, m := range sel.Modules {
		b.WriteString(m.InstallPath() + "\n")
	}
	return b.Bytes()
}

func sortedByName(mods []*Module) []*Module {
	out := append([]*Module(nil), mods...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ListFile renders the selection as the module list stage 1 and stage 2
// read (layout.ModuleList): one name per line, in load order.
func ListFile(sel Selection) []byte {
	var b bytes.Buffer
	for _, n := range sel.Names() {
		b.WriteString(n + "\n")
	}
	return b.Bytes()
}

// ParseDepFile reads a modules.dep into module path -> dependency paths;
// tests use it to compare against depmod.
func ParseDepFile(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep: bad line %q", sc.Text())
		}
		out[mod] = strings.Fields(deps)
	}
	return out, sc.Err()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
