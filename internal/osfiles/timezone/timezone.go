// Package timezone sets the node's local time zone: /etc/localtime becomes
// a symlink into the rootfs's zoneinfo tree and /etc/timezone names the
// zone, as on Debian.
//
// The rootfs must carry the IANA zoneinfo tree at ZoneinfoDir (Debian's
// tzdata package, /usr/share/zoneinfo). Go's embedded time/tzdata cannot
// stand in: it is only reachable through Go's own time package, while
// busybox, k3s and containers' bind-mounted /etc/localtime need files.
//
// Limits: only zone names (Area/City, UTC, Etc/GMT+3); POSIX TZ strings
// such as "CET-1CEST,M3.5.0,M10.5.0/3" are refused; the RTC is not touched
// (Linux keeps it in UTC).
package timezone

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// Paths on the node.
const (
	ZoneinfoDir   = "/usr/share/zoneinfo"
	LocaltimeLink = "/etc/localtime"
	TimezoneFile  = "/etc/timezone"
)

// Set validates name against root's zoneinfo tree and points
// root/etc/localtime at it (replacing what was there atomically) and writes
// root/etc/timezone. The symlink target is the path on the node
// (/usr/share/zoneinfo/NAME), not under root.
func Set(root, name string) error {
	if err := Validate(root, name); err != nil {
		return err
	}
	target := filepath.Join(ZoneinfoDir, name)
	link := filepath.Join(root, LocaltimeLink)
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("timezone %s: %w", name, err)
	}
	tmp := link + ".tmp-kestrel"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("timezone %s: %w", name, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("timezone %s: %w", name, err)
	}
	if err := atomicfile.Write(filepath.Join(root, TimezoneFile), []byte(name+"\n"), 0o644, atomicfile.NoChown, atomicfile.NoChown); err != nil {
		return fmt.Errorf("timezone %s: %w", name, err)
	}
	return nil
}

// Validate checks that name is a zone of root's zoneinfo tree.
func Validate(root, name string) error {
	if name == "" {
		return errors.New("timezone: empty name")
	}
	if filepath.IsAbs(name) || strings.Contains(name, "..") || strings.ContainsAny(name, " ,\n") {
		return fmt.Errorf("timezone %q: not a zone name (e.g. Europe/Berlin, UTC)", name)
	}
	path := filepath.Join(root, ZoneinfoDir, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("timezone %q: unknown zone (no %s)", name, path)
	}
	if err != nil {
		return fmt.Errorf("timezone %q: %w", name, err)
	}
	if !bytes.HasPrefix(data, []byte("TZif")) {
		return fmt.Errorf("timezone %q: %s is not a TZif file", name, path)
	}
	if _, err := time.LoadLocationFromTZData(name, data); err != nil {
		return fmt.Errorf("timezone %q: %s: %w", name, path, err)
	}
	return nil
}
