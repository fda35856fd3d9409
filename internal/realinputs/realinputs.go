// Package realinputs finds, for tests, the corpus of real users' inputs:
// k3OS configs, cloud-init user-data, kernel command lines and SUC Plans
// written by other people, kept in shared/reference/real-inputs next to
// the repository (../shared from the repository root). They are other
// people's files, so they are read from there at test time and never
// copied into the repository.
//
// Only tests import this package (internal/boundaries_test.go checks it).
package realinputs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Rel is where the corpus lives relative to the directory that holds the
// repository (and the shared tree).
const Rel = "shared/reference/real-inputs"

// Dir finds the corpus by walking up from the working directory until a
// directory holding shared/reference/real-inputs is found. A worktree at
// /work/wt-x and the main tree at /work/main both find /work/shared.
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, Rel)
		if fi, err := os.Stat(c); err == nil && fi.IsDir() {
			return c, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no %s in %s or any directory above it: the real-inputs corpus (../shared next to the repository) is missing", Rel, wd)
		}
	}
}

// File is one corpus file.
type File struct {
	Name string // path relative to the corpus (config/k3os-picl-agent.yaml)
	Path string // absolute path
	Data []byte
}

// Files lists the corpus files in sub ("config", "cmdline", "plans", or
// "." for the top level) whose names end in one of exts, sorted by name.
func Files(sub string, exts ...string) ([]File, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		return nil, err
	}
	var out []File
	for _, e := range ents {
		if e.IsDir() || !hasExt(e.Name(), exts) {
			continue
		}
		p := filepath.Join(dir, sub, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: filepath.ToSlash(filepath.Join(sub, e.Name())), Path: p, Data: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) == 0 {
		return nil, errors.New("no files in " + filepath.Join(dir, sub))
	}
	return out, nil
}

func hasExt(name string, exts []string) bool {
	for _, e := range exts {
		if strings.HasSuffix(name, e) {
			return true
		}
	}
	return false
}

// CmdlineOf returns the kernel command line of a .cmdline file: its first
// line that is not a "#" comment.
func CmdlineOf(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}
