package config

import (
	"strings"

	"github.com/kestrel-os/kestrel/internal/kcmdline"
)

// ParseCmdline reads the config keys of a kernel command line as one
// source called name, typed by the schema (see FromFlat). The line is
// split by internal/kcmdline, the kernel's grammar; on top of it:
//
//   - only kestrel.* and k3os.* (legacy) keys are config; everything else
//     (console=, root=, quiet) is ignored;
//   - the boot switches stage 1 and stage 2 read (kestrel.slot,
//     kestrel.debug, k3OS's mode, fallback_mode, rescue, and the dm-verity
//     parameters kestrel.verity.* of internal/verity) are not config;
//   - a bare key means "true" (kestrel.console_shell);
//   - the rest of the key is a config path; every occurrence is kept in
//     order, so a repeated list key builds a list, and a repeated scalar
//     keeps the last value.
//
// An unknown key or a badly typed value makes the whole source invalid,
// like any other source; errors give line 1 and the column.
//
// Limits: lists of mappings (write_files, users, mounts, wifi, routes)
// cannot be given here. Secrets given here are visible in /proc/cmdline
// to every local user; Kestrel never copies them into an installed config.
func ParseCmdline(name, line string) (*Document, error) {
	var entries []FlatEntry
	for _, p := range kcmdline.Parse(line) {
		path, ok := cmdlineConfigPath(p.Key)
		if !ok {
			continue
		}
		v := p.Value
		if p.Bare {
			v = "true"
		}
		entries = append(entries, FlatEntry{Path: path, Value: v, Col: p.Offset + 1})
	}
	return FromFlat(name, entries)
}

// cmdlinePrefixes are the key prefixes read as config; k3os. is the
// legacy one.
var cmdlinePrefixes = []string{"kestrel.", "k3os."}

// bootSwitches are kestrel./k3os. keys that stage 1 and stage 2 read
// from the command line themselves; they are not config. A name ending
// in '.' stands for every key below it.
var bootSwitches = []string{"slot", "debug", "mode", "fallback_mode", "rescue", "rescue_timeout", "verity."}

// cmdlineConfigPath returns the config path of a command-line key, and
// whether the key is config at all.
func cmdlineConfigPath(key string) (string, bool) {
	for _, pre := range cmdlinePrefixes {
		if rest, ok := strings.CutPrefix(key, pre); ok && rest != "" {
			for _, b := range bootSwitches {
				if rest == b || strings.HasSuffix(b, ".") && strings.HasPrefix(rest, b) {
					return "", false
				}
			}
			return rest, true
		}
	}
	return "", false
}
