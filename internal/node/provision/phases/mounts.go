package phases

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
)

// probeTypes are tried in order when a mount names no fstype.
var probeTypes = []string{"ext4", "xfs", "btrfs", "vfat", "iso9660"}

// mountAll mounts kestrel.mounts in order; one failing mount does not
// keep the others from mounting.
func (r *Runner) mountAll(ms []config.Mount) error {
	if r.o.Mount == nil {
		return errors.New("no mount function")
	}
	var errs []error
	for i, m := range ms {
		if err := r.mountOne(m); err != nil {
			errs = append(errs, fmt.Errorf("mounts[%d] %s: %w", i, m.Path, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) mountOne(m config.Mount) error {
	dev := m.Device
	if dev != "" {
		dev = r.path(dev)
	} else {
		devs, err := datasource.BlockDevices(r.path("/sys/class/block"), r.path("/dev"))()
		if err != nil {
			return err
		}
		if dev, err = FindFilesystem(devs, m.Label, m.UUID); err != nil {
			return err
		}
	}
	flags, data := MountOptions(m.Options)
	types := probeTypes
	if m.FSType != "" {
		types = []string{m.FSType}
	}
	var errs []error
	for _, t := range types {
		mm := mounts.Mount{Source: dev, Target: r.path(m.Path), FSType: t, Flags: flags, Data: data}
		err := mm.Do(r.o.Mount)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// MountOptions splits fstab-style options into mount flags and the data
// string the filesystem gets.
func MountOptions(opts []string) (uintptr, string) {
	known := map[string]uintptr{
		"ro": syscall.MS_RDONLY, "nosuid": syscall.MS_NOSUID, "nodev": syscall.MS_NODEV,
		"noexec": syscall.MS_NOEXEC, "noatime": syscall.MS_NOATIME, "nodiratime": syscall.MS_NODIRATIME,
		"relatime": syscall.MS_RELATIME, "sync": syscall.MS_SYNCHRONOUS, "dirsync": syscall.MS_DIRSYNC,
		"rw": 0, "defaults": 0, "suid": 0, "dev": 0, "exec": 0, "async": 0, "auto": 0, "nofail": 0,
	}
	var flags uintptr
	var data []string
	for _, o := range opts {
		for _, p := range strings.Split(o, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if f, ok := known[p]; ok {
				flags |= f
				continue
			}
			data = append(data, p)
		}
	}
	return flags, strings.Join(data, ",")
}

// FindFilesystem returns the first of devs whose ext2/3/4 or FAT
// filesystem has the label (exact match) or UUID (case-insensitive; FAT
// serials as XXXX-XXXX).
func FindFilesystem(devs []string, label, uuid string) (string, error) {
	for _, d := range devs {
		l, u, err := ReadFSID(d)
		if err != nil {
			continue
		}
		if (label != "" && l == label) || (uuid != "" && strings.EqualFold(u, uuid)) {
			return d, nil
		}
	}
	if label != "" {
		return "", fmt.Errorf("no filesystem labelled %q (ext4 and FAT labels are read)", label)
	}
	return "", fmt.Errorf("no filesystem with UUID %q (ext4 and FAT UUIDs are read)", uuid)
}

// ReadFSID reads the label and UUID of an ext2/3/4 or FAT12/16/32
// filesystem from its superblock or boot sector.
func ReadFSID(dev string) (label, uuid string, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	buf := make([]byte, 2048)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return "", "", err
	}
	return ParseFSID(buf)
}

// ParseFSID reads label and UUID from the first 2 KiB of a filesystem.
func ParseFSID(b []byte) (label, uuid string, err error) {
	if len(b) < 2048 {
		return "", "", errors.New("short read")
	}
	if sb := b[1024:]; binary.LittleEndian.Uint16(sb[56:]) == 0xEF53 { // ext magic
		u := hex.EncodeToString(sb[104:120])
		return cstr(sb[120:136]), u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:], nil
	}
	if b[510] == 0x55 && b[511] == 0xAA {
		off := 0x2B // FAT12/16 extended boot record
		if string(b[0x52:0x57]) == "FAT32" {
			off = 0x47
		} else if !strings.HasPrefix(string(b[0x36:0x3B]), "FAT") {
			return "", "", errors.New("not a FAT or ext filesystem")
		}
		serial := binary.LittleEndian.Uint32(b[off-4:])
		return strings.TrimRight(string(b[off:off+11]), " "), fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff), nil
	}
	return "", "", errors.New("not a FAT or ext filesystem")
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
