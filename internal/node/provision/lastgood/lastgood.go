// Package lastgood keeps the last valid version of each editable config
// file (the ESP's config.yaml, the state partition's config.yaml and
// config.d/*.yaml) on the state partition. When an edit breaks a file
// (invalid YAML, a wrong type; an unknown key only leaves that key out,
// see config.Error.UnknownKey), the file's problems are
// still reported and it still contributes nothing of its own, but its last
// good version is merged in its place, whole: the SSH keys and settings it
// held before the edit stay in effect instead of vanishing with it.
//
// Stage 1 and stage 2 both load through a Store; only stage 2 saves, once
// per boot, the files it found valid, and drops the copies of files that
// are gone (a deleted file is a choice, not an accident). A file whose
// absence is not known is not gone: when the ESP is not mounted (its
// directory is not a mount point) its copy is kept and merged in its place,
// and when config.d cannot be listed its copies are kept.
//
// Limits: image defaults and the kernel command line have no copies (they
// cannot be edited in place), nor have datasources (they are fetched
// again each boot); a copy is keyed by the file's path, so a renamed file
// starts without one; copies hold secrets and are written 0600 in a 0700
// directory.
package lastgood

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// Dir is where the copies live, relative to the state partition's mount.
const Dir = layout.StateLastGoodDir

// Suffix marks a copy's source name in provenance and errors.
const Suffix = " (last good copy)"

// Store is a directory of last-good copies.
type Store struct {
	Dir string // "" disables copies: Load is config.LoadLocal
}

// Loaded is what Load read.
type Loaded struct {
	Sources *config.Sources
	// Replaced names the files that were invalid and replaced by their
	// last good copy.
	Replaced []string
	// Unmounted names the ESP's config when the ESP was not mounted: its
	// last good copy, if any, was merged in its place.
	Unmounted []string

	valid  map[string][]byte // copy name -> content of a valid file
	seen   map[string]bool   // copy names of the files present, valid or not
	keepDI bool              // config.d could not be listed: keep its copies
}

// file is one editable file and the name of its copy. Copies are named
// by the file's role, not its path, which differs between stage 1 (under
// the new root, the ESP at a scratch mount) and stage 2.
type file struct{ path, copy string }

// Copy names.
const (
	espCopy      = "esp-config.yaml"
	stateCopy    = "state-config.yaml"
	dropinPrefix = "config.d-"
)

// editable lists the editable files; unlisted is true when config.d could
// not be listed (its copies must then be kept).
func editable(loc config.Locations, s *config.Sources) (files []file, unlisted bool) {
	if loc.ESPConfig != "" {
		files = append(files, file{loc.ESPConfig, espCopy})
	}
	if loc.StateConfig != "" {
		files = append(files, file{loc.StateConfig, stateCopy})
	}
	if loc.StateConfigDir != "" {
		more, err := config.DirFiles(loc.StateConfigDir)
		if err != nil {
			s.AddError(err)
			unlisted = true
		}
		for _, f := range more {
			files = append(files, file{f, dropinPrefix + filepath.Base(f)})
		}
	}
	return files, unlisted
}

// Load reads the local sources in config.LoadLocal's order; an editable
// file that is present but invalid is followed by its last good copy,
// when there is one.
func (st Store) Load(loc config.Locations) *Loaded {
	l := &Loaded{
		Sources: config.LoadLocal(config.Locations{Defaults: loc.Defaults, Cmdline: loc.Cmdline}),
		valid:   map[string][]byte{}, seen: map[string]bool{},
	}
	files, unlisted := editable(loc, l.Sources)
	l.keepDI = unlisted
	for _, f := range files {
		data, err := config.ReadSource(f.path)
		if errors.Is(err, os.ErrNotExist) && f.copy == espCopy && !mountPoint(filepath.Dir(f.path)) {
			// Not known to be gone: the ESP is not there to hold it.
			l.seen[f.copy] = true
			l.Unmounted = append(l.Unmounted, f.path)
			if st.Dir != "" {
				if good, err := os.ReadFile(filepath.Join(st.Dir, f.copy)); err == nil {
					l.Sources.Add(f.path+Suffix, good)
				}
			}
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		l.seen[f.copy] = true
		if err == nil && l.Sources.Add(f.path, data) {
			l.valid[f.copy] = data
			continue
		}
		l.Sources.AddError(err)
		if st.Dir == "" {
			continue
		}
		if good, err := os.ReadFile(filepath.Join(st.Dir, f.copy)); err == nil && l.Sources.Add(f.path+Suffix, good) {
			l.Replaced = append(l.Replaced, f.path)
		}
	}
	return l
}

// Save records the valid files of l as their last good copies and removes
// the copies of files that no longer exist. Unchanged copies are not
// rewritten.
func (st Store) Save(l *Loaded) error {
	if st.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(st.Dir, 0o700); err != nil {
		return fmt.Errorf("last good config: %w", err)
	}
	var errs []error
	for name, data := range l.valid {
		p := filepath.Join(st.Dir, name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := atomicfile.Write(p, data, 0o600, atomicfile.NoChown, atomicfile.NoChown); err != nil {
			errs = append(errs, fmt.Errorf("last good config: %w", err))
		}
	}
	ents, err := os.ReadDir(st.Dir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("last good config: %w", err))...)
	}
	for _, e := range ents {
		keep := l.seen[e.Name()] || (l.keepDI && strings.HasPrefix(e.Name(), dropinPrefix))
		if !keep && !e.IsDir() {
			if err := os.Remove(filepath.Join(st.Dir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("last good config: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// mountPoint reports whether dir is the root of a mounted filesystem: it
// exists and sits on another device than its parent. The ESP is FAT and
// its mount point's parent is not, so a failed ESP mount leaves a plain
// directory on the parent's device.
func mountPoint(dir string) bool {
	var st, parent syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(filepath.Join(dir, ".."), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino // "/" is its own parent
}
