package pipeline

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kestrel-os/kestrel/internal/build/rootfs"
	"github.com/kestrel-os/kestrel/internal/osfiles/timezone"
)

// installZoneinfo copies the zoneinfo tree of an unpacked tzdata package
// into the rootfs at dir (kestrel.timezone points /etc/localtime into it).
// The right/ (leap-second) and posix/ (duplicate) trees are left out to
// save space; symlinks between zones are kept as they are.
func installZoneinfo(tzdataRoot, dir string) error {
	src := filepath.Join(tzdataRoot, timezone.ZoneinfoDir)
	dst := filepath.Join(dir, timezone.ZoneinfoDir)
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("zoneinfo: %w", err)
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == "right" || rel == "posix") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("zoneinfo: %w", err)
			}
			if filepath.IsAbs(link) || rel == "posixrules" {
				return nil // points outside the tree, or at posix/
			}
			os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return rootfs.CopyFile(p, target, 0o644)
		}
		return nil
	})
}
