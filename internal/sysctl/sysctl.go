// Package sysctl writes kernel parameters under /proc/sys.
//
// Keys are given as sysctl(8) does: dotted ("net.ipv4.ip_forward") or
// slashed ("net/ipv4/ip_forward"). As in sysctl(8), a key containing a
// slash is taken as a path and its dots are literal, which is how an
// interface name with a dot (a VLAN such as eth0.100) is written:
// "net/ipv4/conf/eth0.100/rp_filter".
//
// Limits: values are written as given (sysctl(8) does the same), so a
// multi-value key such as net.ipv4.ip_local_port_range takes "32768 60999";
// no globs, no reading back, no /etc/sysctl.d files: the config is the only
// source. The proc directory is a parameter so tests use a temporary tree.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ProcSys is the directory the kernel serves parameters from.
const ProcSys = "/proc/sys"

// Apply writes every key in values under procSys, in sorted key order so
// that runs are reproducible. It goes on after a failing key and returns
// one error per failing key, joined.
func Apply(procSys string, values map[string]string) error {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		if err := Write(procSys, k, values[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Write sets one key. The error names the key, the file and the value.
func Write(procSys, key, value string) error {
	rel, err := Path(key)
	if err != nil {
		return fmt.Errorf("sysctl %q: %w", key, err)
	}
	p := filepath.Join(procSys, rel)
	// No O_CREATE: a key that does not exist is an error, not a new file.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sysctl %q: no such key (%s)", key, p)
		}
		return fmt.Errorf("sysctl %q: %w", key, err)
	}
	// One write(2): /proc/sys handlers parse the value per write call.
	_, werr := f.Write([]byte(value + "\n"))
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("sysctl %q = %q: write %s: %w", key, value, p, werr)
	}
	if cerr != nil {
		return fmt.Errorf("sysctl %q = %q: close %s: %w", key, value, p, cerr)
	}
	return nil
}

// Path turns a key into a path relative to /proc/sys.
func Path(key string) (string, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return "", errors.New("empty key")
	}
	var parts []string
	if strings.Contains(key, "/") {
		parts = strings.Split(strings.Trim(key, "/"), "/")
	} else {
		parts = strings.Split(key, ".")
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return "", fmt.Errorf("invalid key component %q", p)
		}
	}
	return filepath.Join(parts...), nil
}
