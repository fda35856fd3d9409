// Package mounts describes mounts as data, performs them, and reads the
// kernel's mount table back.
//
// Boot code builds a []Mount plan (a pure function of its inputs, table
// tested on the host) and hands it to Apply, which creates each target
// directory and calls mount(2) through an injectable function. Mountinfo
// parses /proc/self/mountinfo for the shutdown path and for status.
//
// Limits: no fstab, no mount helpers (mount.nfs and friends), no new mount
// API (fsopen/fsmount); options are passed as the kernel's data string.
package mounts

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
)

// Mount is one mount(2) call.
type Mount struct {
	Source string
	Target string
	FSType string
	Flags  uintptr
	Data   string
	// Optional mounts may fail (a kernel without bpffs, no debugfs):
	// Apply reports them and continues.
	Optional bool
	// Mode, when non-zero, is the permission of a target directory
	// Apply creates.
	Mode os.FileMode
}

// MountFunc is the signature of unix.Mount.
type MountFunc func(source, target, fstype string, flags uintptr, data string) error

func (m Mount) String() string {
	var opts []string
	for _, f := range flagNames {
		if m.Flags&f.flag == f.flag && f.flag != 0 {
			opts = append(opts, f.name)
		}
	}
	if m.Data != "" {
		opts = append(opts, m.Data)
	}
	s := fmt.Sprintf("%s on %s", m.Source, m.Target)
	if m.FSType != "" {
		s += " type " + m.FSType
	}
	if len(opts) > 0 {
		s += " (" + strings.Join(opts, ",") + ")"
	}
	return s
}

var flagNames = []struct {
	flag uintptr
	name string
}{
	{syscall.MS_RDONLY, "ro"},
	{syscall.MS_NOSUID, "nosuid"},
	{syscall.MS_NODEV, "nodev"},
	{syscall.MS_NOEXEC, "noexec"},
	{syscall.MS_NOATIME, "noatime"},
	{syscall.MS_DIRSYNC, "dirsync"},
	{syscall.MS_RELATIME, "relatime"},
	{syscall.MS_REMOUNT, "remount"},
	{syscall.MS_MOVE, "move"},
	{syscall.MS_BIND | syscall.MS_REC, "rbind"},
	{syscall.MS_BIND, "bind"},
	{syscall.MS_SHARED, "shared"},
}

// Apply performs ms in order. It creates each target directory (and for a
// bind mount of a directory, the source) first. A failing mount stops
// Apply unless it is Optional; failures of optional mounts are returned
// in skipped.
func Apply(ms []Mount, mount MountFunc) (skipped []error, err error) {
	for _, m := range ms {
		if err := m.Do(mount); err != nil {
			if m.Optional {
				skipped = append(skipped, err)
				continue
			}
			return skipped, err
		}
	}
	return skipped, nil
}

// Do performs one mount, creating its target directory first.
func (m Mount) Do(mount MountFunc) error {
	mode := m.Mode
	if mode == 0 {
		mode = 0o755
	}
	if m.Target != "" && m.Flags&(syscall.MS_REMOUNT) == 0 {
		if err := os.MkdirAll(m.Target, mode); err != nil {
			return fmt.Errorf("mount %s: create target: %w", m, err)
		}
	}
	if err := mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil {
		return fmt.Errorf("mount %s: %w", m, err)
	}
	return nil
}

// Info is one line of /proc/self/mountinfo.
type Info struct {
	ID, Parent int
	Root       string // root of the mount within its filesystem
	Target     string
	Options    string   // per-mount options
	Optional   []string // optional fields: propagation ("shared:1", "master:1"); none when private
	FSType     string
	Source     string
	Super      string // per-superblock options
}

// ReadOnly reports whether the mount is read-only.
func (i Info) ReadOnly() bool {
	for _, o := range strings.Split(i.Options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// ReadMountinfo parses the mountinfo file at path.
func ReadMountinfo(path string) ([]Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	defer f.Close()
	infos, err := ParseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return infos, nil
}

// ParseMountinfo parses mountinfo text (proc(5)); entries keep the
// kernel's order, which is mount order. The grammar is
// github.com/moby/sys/mountinfo's parser, which splits on single spaces
// (so an empty source, "- tmpfs  rw", stays empty) and undoes the
// kernel's octal escapes (\040 for a space) in paths, type and source.
// Limit: that parser's lines are at most 64 KiB (bufio.Scanner's default).
func ParseMountinfo(r io.Reader) ([]Info, error) {
	ms, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	out := make([]Info, len(ms))
	for i, m := range ms {
		out[i] = Info{
			ID: m.ID, Parent: m.Parent,
			Root: m.Root, Target: m.Mountpoint, Options: m.Options,
			FSType: m.FSType, Source: m.Source, Super: m.VFSOptions,
		}
		if m.Optional != "" {
			out[i].Optional = strings.Split(m.Optional, " ")
		}
	}
	return out, nil
}

// Find returns the last (topmost) mount at target.
func Find(infos []Info, target string) (Info, bool) {
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].Target == target {
			return infos[i], true
		}
	}
	return Info{}, false
}
