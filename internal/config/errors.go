package config

import (
	"fmt"
	"strings"
)

// Pos is where a value came from: a file (or a source label such as
// /proc/cmdline or nocloud:/dev/sr0:user-data), a line and a column, both
// 1-based. Line 0 means the whole source.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem with one config value, printed as
// "file:line:col: key.path: problem".
type Error struct {
	Pos     Pos
	Path    string // concrete key path (write_files[1].encoding); empty for the whole document
	Problem string
	// UnknownKey marks a key the schema does not have (a misspelling, a
	// cloud-init or k3OS key Kestrel does not implement). `kestrel config
	// validate` fails on it like on any error; at boot only that key (or
	// the list entry holding it) is left out and the rest of its source
	// applies, so one stray key does not cost a node its SSH keys.
	UnknownKey bool
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", e.Pos, e.Problem)
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, e.Path, e.Problem)
}

// Errors is every problem found in one source. A source with any error
// other than unknown keys is skipped as a whole; see Error.UnknownKey.
type Errors []*Error

// OnlyUnknownKeys reports whether every problem is an unknown key, that is
// whether the source still applies at boot.
func (es Errors) OnlyUnknownKeys() bool {
	for _, e := range es {
		if !e.UnknownKey {
			return false
		}
	}
	return true
}

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// suggest returns the candidate closest to key by edit distance, or "" when
// none is close enough to be a likely misspelling.
func suggest(key string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(strings.ToLower(key), strings.ToLower(c))
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := len(key) / 3
	if limit < 1 {
		limit = 1
	}
	if limit > 3 {
		limit = 3
	}
	if bestD <= limit {
		return best
	}
	return ""
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance, so a swapped pair of letters counts as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
