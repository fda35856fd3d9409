package config

import (
	"errors"
	"fmt"
	"sort"
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
//     kestrel.debug, kestrel.live, k3OS's mode, fallback_mode, rescue, and the dm-verity
//     parameters kestrel.verity.* of internal/verity) are not config;
//   - a bare key means "true" (kestrel.console_shell);
//   - the rest of the key is a config path; every occurrence is kept in
//     order, so a repeated list key builds a list, and a repeated scalar
//     keeps the last value.
//
// A badly typed value makes the whole source invalid, like any other
// source; an unknown key is reported and left out (see Parse). Errors
// give line 1 and the column.
//
// k3OS also read keys without a prefix (hostname=, init_cmd=); Kestrel
// does not (the kernel and other programs own that namespace), but an
// unprefixed key that k3OS would have read as a top-level config key is
// reported as an unknown key, with the spelling to use, instead of being
// dropped silently.
//
// Limits: lists of mappings (write_files, users, mounts, wifi, routes)
// cannot be given here. Secrets given here are visible in /proc/cmdline
// to every local user; Kestrel never copies them into an installed config.
func ParseCmdline(name, line string) (*Document, error) {
	var entries []FlatEntry
	var unprefixed Errors
	for _, p := range kcmdline.Parse(line) {
		path, ok := cmdlineConfigPath(p.Key)
		if !ok {
			first, _, _ := strings.Cut(p.Key, ".")
			if f, top := lookupField(configType, first); top && f.Name != "kestrel" {
				unprefixed = append(unprefixed, &Error{Pos: Pos{name, 1, p.Offset + 1}, Path: p.Key, UnknownKey: true,
					Problem: fmt.Sprintf("k3OS read unprefixed keys, Kestrel reads only kestrel.* and k3os.*: this setting is not applied; write k3os.%s=... or kestrel.%s=...", p.Key, p.Key)})
			}
			continue
		}
		v := p.Value
		if p.Bare {
			v = "true"
		}
		entries = append(entries, FlatEntry{Path: path, Value: v, Col: p.Offset + 1})
	}
	d, err := FromFlat(name, entries)
	if len(unprefixed) == 0 {
		return d, err
	}
	var errs Errors
	errors.As(err, &errs)
	errs = append(errs, unprefixed...)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Pos.Col < errs[j].Pos.Col })
	return d, errs
}

// cmdlinePrefixes are the key prefixes read as config; k3os. is the
// legacy one.
var cmdlinePrefixes = []string{"kestrel.", "k3os."}

// bootSwitches are kestrel./k3os. keys that stage 1 and stage 2 read
// from the command line themselves; they are not config. A name ending
// in '.' stands for every key below it.
var bootSwitches = []string{"slot", "debug", "mode", "fallback_mode", "rescue", "rescue_timeout", "verity.", "live"}

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
