package config

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// The order of sources, later over earlier (see Merge for how values
// merge):
//
//  1. image defaults (Locations.Defaults, shipped in the rootfs)
//  2. the kernel command line (kestrel.* and k3os.* keys)
//  3. config.yaml on the ESP (editable on any PC after flashing)
//  4. the state partition's config.yaml
//  5. the state partition's config.d/*.yaml, in lexical order
//  6. datasources: the NoCloud CIDATA disk (meta-data, then user-data)
//  7. cloud metadata services (EC2 / OpenStack style)
//  8. kestrel.config_url, as set by everything above
//
// 1-6 are local and available from the initramfs on; 7 and 8 need the
// network. The command line comes early so that a file can override it,
// but a boot switch is still a reliable fallback when no file exists.
// Package datasource adds 6-8 (datasource.Gather).

// Locations names the local sources. Nothing is read from a fixed path:
// stage 1, stage 2 and tests each say where things are.
type Locations struct {
	Defaults       string // image defaults file
	Cmdline        string // file holding the kernel command line
	ESPConfig      string // config.yaml on the ESP
	StateConfig    string // config.yaml on the state partition
	StateConfigDir string // config.d directory on the state partition
}

// Where things are on the state partition, relative to its mount point,
// and the image's defaults.
const (
	StateConfigFile = layout.StateConfigFile
	StateConfigDir  = layout.StateConfigDir
	DefaultsFile    = layout.ConfigDefaults
)

// DefaultLocations gives the locations in a root filesystem mounted at
// root ("/" in stage 2, layout.NewRoot in stage 1) with the ESP mounted at
// espMount (layout.ESPMount in stage 2) and the command line at
// cmdlineFile (/proc/cmdline).
func DefaultLocations(root, espMount, cmdlineFile string) Locations {
	state := filepath.Join(root, layout.StateMount)
	return Locations{
		Defaults:       filepath.Join(root, DefaultsFile),
		Cmdline:        cmdlineFile,
		ESPConfig:      filepath.Join(espMount, layout.ESPUserConfig),
		StateConfig:    filepath.Join(state, StateConfigFile),
		StateConfigDir: filepath.Join(state, StateConfigDir),
	}
}

// LoadLocal reads sources 1-5 in order. Missing files are skipped
// silently; bad ones are skipped as a whole and recorded in the returned
// Sources' Errors; unknown keys are recorded there too, and left out of
// sources that otherwise apply. Add datasources to the result, then
// Merge.
func LoadLocal(loc Locations) *Sources {
	s := &Sources{}
	if loc.Defaults != "" {
		s.AddFile(loc.Defaults)
	}
	if loc.Cmdline != "" {
		if b, err := os.ReadFile(loc.Cmdline); err != nil {
			if !os.IsNotExist(err) {
				s.AddError(&Error{Pos: Pos{File: loc.Cmdline}, Problem: fmt.Sprintf("cannot read: %v", err)})
			}
		} else {
			d, err := ParseCmdline(loc.Cmdline, string(b))
			s.AddError(err)
			s.AddDocument(d)
		}
	}
	for _, f := range []string{loc.ESPConfig, loc.StateConfig} {
		if f != "" {
			s.AddFile(f)
		}
	}
	if loc.StateConfigDir != "" {
		s.AddDir(loc.StateConfigDir)
	}
	return s
}
