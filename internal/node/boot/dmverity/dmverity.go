// Package dmverity opens a dm-verity protected root in stage 1: it creates
// a device-mapper device through the DM ioctls on /dev/mapper/control
// (DM_DEV_CREATE, DM_TABLE_LOAD, DM_DEV_SUSPEND to resume), reports the
// target's status (DM_TABLE_STATUS: verified or corruption seen), removes
// it (DM_DEV_REMOVE), and reads a whole device to find the first block that
// fails verification (Check).
//
// The ioctls are written here, on golang.org/x/sys/unix's DmIoctl and
// DmTargetSpec, rather than taken from a library: anatol/devmapper.go (the
// one Go library for this; u-root, Talos and gokrazy have none) is not
// served by the module proxy these machines reach, and the five calls
// Kestrel needs are a header, one target spec and a string each.
//
// There is no udev in stage 1: the device node is /dev/dm-<minor> from
// devtmpfs, created with mknod from the returned device number when
// devtmpfs has not made it.
//
// Limits: one target per table, created read-only; no uuid, no deferred
// remove, no event waits; the default error mode (a block that fails
// verification reads as EIO, see Open for why), no forward error
// correction, no root hash signature.
package dmverity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// RootName is the device-mapper name of the verified root stage 1 mounts.
const RootName = layout.VerityRootName

// Control is the device-mapper control node devtmpfs creates once dm-mod
// is loaded.
const Control = "/dev/mapper/control"

// Device is an active verity mapping.
type Device struct {
	Name string // device-mapper name
	Dev  uint64 // device number (unix.Major/unix.Minor)
	Path string // block device node, <dev>/dm-<minor>
}

// Open maps data (a block device path holding the squashfs and its hash
// tree, as the builder lays them out) through dm-verity under name, with
// the table p.Table makes, and returns the active device. control is the
// control node (Control) and devDir the directory of device nodes ("/dev").
//
// The table carries no error-mode option, so the kernel's default applies:
// a block whose hash does not match reads as EIO and the status turns to
// "C". Not restart_on_corruption: a reboot straight from the kernel would
// bypass stage 1, which names the failure on the console and demotes the
// slot's boot entry so the next boot falls back to the other slot (a
// restart loop could retry the same slot for ever). Not ignore_corruption:
// that would boot a tampered root.
func Open(control, devDir, name string, p verity.Params, data string) (*Device, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	start, sectors, target, params := p.Table(data)
	ctl, err := os.OpenFile(control, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("device-mapper control: %w", err)
	}
	defer ctl.Close()
	fd := ctl.Fd()

	if _, err := ioctl(fd, unix.DM_DEV_CREATE, name, 0, nil); err != nil {
		return nil, fmt.Errorf("create dm device %s: %w", name, err)
	}
	undo := func(err error) (*Device, error) {
		if _, rerr := ioctl(fd, unix.DM_DEV_REMOVE, name, 0, nil); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove dm device %s again: %w", name, rerr))
		}
		return nil, err
	}
	spec := targetSpec(start, sectors, target, params)
	if _, err := ioctl(fd, unix.DM_TABLE_LOAD, name, unix.DM_READONLY_FLAG, spec); err != nil {
		return undo(fmt.Errorf("load table of %s (%s %s): %w", name, target, params, err))
	}
	h, err := ioctl(fd, unix.DM_DEV_SUSPEND, name, 0, nil) // without DM_SUSPEND_FLAG: resume
	if err != nil {
		return undo(fmt.Errorf("resume dm device %s: %w", name, err))
	}
	d := &Device{Name: name, Dev: h.Dev}
	if d.Path, err = node(devDir, h.Dev); err != nil {
		return undo(err)
	}
	return d, nil
}

// NodeByName returns the block device node (devDir/dm-N) of the
// device-mapper device called name, found through sysRoot/block/*/dm/name:
// without udev there are no /dev/mapper/<name> links.
func NodeByName(sysRoot, devDir, name string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(sysRoot, "block"))
	if err != nil {
		return "", fmt.Errorf("dm device %s: %w", name, err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysRoot, "block", e.Name(), "dm", "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("dm device %s: not in %s", name, filepath.Join(sysRoot, "block"))
}

// node returns devDir/dm-<minor>, creating the block device node when
// devtmpfs has not.
func node(devDir string, dev uint64) (string, error) {
	p := filepath.Join(devDir, fmt.Sprintf("dm-%d", unix.Minor(dev)))
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != dev {
			return "", fmt.Errorf("%s exists but is not block device %d:%d", p, unix.Major(dev), unix.Minor(dev))
		}
		return p, nil
	}
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(dev)); err != nil {
		return "", fmt.Errorf("mknod %s (%d:%d): %w", p, unix.Major(dev), unix.Minor(dev), err)
	}
	return p, nil
}

// Status is one target's status line, as `dmsetup status` prints it after
// the start, length and type.
type Status struct {
	Target string // "verity"
	Info   string // "V" verified so far, "C" corruption seen (then more fields on newer kernels)
}

// Corrupt reports whether the verity target has seen a block that failed
// verification.
func (s Status) Corrupt() bool { return strings.HasPrefix(s.Info, "C") }

// TableStatus returns the status of the device name's (single) target.
func TableStatus(control, name string) (Status, error) {
	ctl, err := os.OpenFile(control, os.O_RDWR, 0)
	if err != nil {
		return Status{}, fmt.Errorf("device-mapper control: %w", err)
	}
	defer ctl.Close()
	out, err := ioctl(ctl.Fd(), unix.DM_TABLE_STATUS, name, 0, make([]byte, 4096))
	if err != nil {
		return Status{}, fmt.Errorf("status of dm device %s: %w", name, err)
	}
	if out.Target_count == 0 {
		return Status{}, fmt.Errorf("status of dm device %s: no active table", name)
	}
	data := out.data
	if len(data) < unix.SizeofDmTargetSpec {
		return Status{}, fmt.Errorf("status of dm device %s: short reply (%d bytes)", name, len(data))
	}
	spec := (*unix.DmTargetSpec)(unsafe.Pointer(&data[0]))
	return Status{Target: cstring(spec.Target_type[:]), Info: cstring(data[unix.SizeofDmTargetSpec:])}, nil
}

// Remove removes the device name. It fails with EBUSY while the device
// is mounted or open.
func Remove(control, name string) error {
	ctl, err := os.OpenFile(control, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("device-mapper control: %w", err)
	}
	defer ctl.Close()
	if _, err := ioctl(ctl.Fd(), unix.DM_DEV_REMOVE, name, 0, nil); err != nil {
		return fmt.Errorf("remove dm device %s: %w", name, err)
	}
	return nil
}

// reply is the header the kernel wrote back and the payload after it.
type reply struct {
	unix.DmIoctl
	data []byte
}

// ioctl sends one DM command: the dm_ioctl header for name with flags,
// then payload (a table to load, or room for a reply), and returns the
// header and payload as the kernel wrote them back.
func ioctl(fd uintptr, cmd uint, name string, flags uint32, payload []byte) (reply, error) {
	if len(name) == 0 || len(name) >= unix.DM_NAME_LEN {
		return reply{}, fmt.Errorf("dm device name %q: want 1 to %d bytes", name, unix.DM_NAME_LEN-1)
	}
	buf := make([]byte, unix.SizeofDmIoctl+len(payload))
	h := (*unix.DmIoctl)(unsafe.Pointer(&buf[0]))
	// Major must match the kernel's; a lower minor is accepted.
	h.Version = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}
	h.Data_size = uint32(len(buf))
	h.Data_start = unix.SizeofDmIoctl
	h.Flags = flags
	copy(h.Name[:], name)
	if cmd == unix.DM_TABLE_LOAD {
		h.Target_count = 1
	}
	copy(buf[unix.SizeofDmIoctl:], payload)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(cmd), uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return reply{}, errno
	}
	if h.Flags&unix.DM_BUFFER_FULL_FLAG != 0 {
		return reply{}, fmt.Errorf("reply does not fit in %d bytes", len(buf))
	}
	r := reply{DmIoctl: *h}
	if h.Data_start <= h.Data_size && int(h.Data_size) <= len(buf) {
		r.data = buf[h.Data_start:h.Data_size]
	}
	return r, nil
}

// targetSpec is DM_TABLE_LOAD's payload for one target: a dm_target_spec,
// then the parameters NUL-terminated and padded to 8 bytes.
func targetSpec(start, sectors uint64, target, params string) []byte {
	n := unix.SizeofDmTargetSpec + len(params) + 1
	n = (n + 7) &^ 7
	buf := make([]byte, n)
	s := (*unix.DmTargetSpec)(unsafe.Pointer(&buf[0]))
	s.Sector_start = start
	s.Length = sectors
	s.Next = uint32(n)
	copy(s.Target_type[:], target)
	copy(buf[unix.SizeofDmTargetSpec:], params)
	return buf
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
