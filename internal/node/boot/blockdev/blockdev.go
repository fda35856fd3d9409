// Package blockdev lists the kernel's block devices from sysfs and finds
// partitions by their GPT partition name.
//
// It reads /sys/class/block/<dev>/uevent (MAJOR, MINOR, DEVNAME, DEVTYPE,
// PARTN, PARTNAME) and <dev>/size; the sysfs root is a parameter so the
// lookup is tested against a fake tree. It never opens the devices
// themselves: GPT names come from the kernel's own partition scan, which
// is what stage 1 can rely on before any filesystem is mounted.
//
// Limits: MBR partitions have no name, so on an MBR-only board lookups by
// name fail; device nodes are assumed to be created by devtmpfs under the
// kernel's DEVNAME (no udev rules, no /dev/disk/by-* links).
package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Device is one block device or partition as sysfs describes it.
type Device struct {
	Name     string // kernel name, e.g. "vda2"
	DevName  string // DEVNAME from uevent, relative to /dev (usually == Name)
	Disk     string // for a partition: kernel name of the whole disk ("vda"); "" for a disk
	PartNum  int    // PARTN for a partition, 0 for a disk
	PartName string // GPT partition name (PARTNAME), "" if none
	Size     int64  // bytes
	Major    int
	Minor    int
}

// IsPartition reports whether d is a partition of a disk.
func (d Device) IsPartition() bool { return d.Disk != "" }

// Path returns the device node of d under devDir (normally "/dev").
func (d Device) Path(devDir string) string {
	name := d.DevName
	if name == "" {
		name = d.Name
	}
	return filepath.Join(devDir, name)
}

// List returns every block device the kernel knows, sorted by name. sysRoot
// is the sysfs mount point (normally "/sys").
func List(sysRoot string) ([]Device, error) {
	dir := filepath.Join(sysRoot, "class", "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var devs []Device
	for _, e := range ents {
		d, err := read(filepath.Join(dir, e.Name()), e.Name())
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Name < devs[j].Name })
	return devs, nil
}

func read(path, name string) (Device, error) {
	d := Device{Name: name}
	ue, err := os.ReadFile(filepath.Join(path, "uevent"))
	if err != nil {
		return d, fmt.Errorf("block device %s: %w", name, err)
	}
	isPart := false
	for _, line := range strings.Split(string(ue), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "MAJOR":
			d.Major, _ = strconv.Atoi(v)
		case "MINOR":
			d.Minor, _ = strconv.Atoi(v)
		case "DEVNAME":
			d.DevName = v
		case "DEVTYPE":
			isPart = v == "partition"
		case "PARTN":
			d.PartNum, _ = strconv.Atoi(v)
		case "PARTNAME":
			d.PartName = v
		}
	}
	if b, err := os.ReadFile(filepath.Join(path, "size")); err == nil {
		sectors, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		d.Size = sectors * 512 // sysfs "size" is always in 512-byte units
	}
	if isPart {
		// /sys/class/block/vda2 -> ../../devices/.../block/vda/vda2: the
		// parent directory of the resolved link is the disk.
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return d, fmt.Errorf("block device %s: resolve sysfs link: %w", name, err)
		}
		d.Disk = filepath.Base(filepath.Dir(real))
	}
	return d, nil
}

// ByPartName returns the partition whose GPT name is name. More than one
// match (two disks carrying a Kestrel image) is an error: booting the wrong
// disk's root silently is worse than stopping.
func ByPartName(devs []Device, name string) (Device, error) {
	var found []Device
	for _, d := range devs {
		if d.IsPartition() && d.PartName == name {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Device{}, fmt.Errorf("%w: no partition named %q", ErrNotFound, name)
	case 1:
		return found[0], nil
	default:
		var names []string
		for _, d := range found {
			names = append(names, d.Name)
		}
		return Device{}, fmt.Errorf("partition name %q is ambiguous: on %s", name, strings.Join(names, ", "))
	}
}

// ByName returns the device with kernel name name.
func ByName(devs []Device, name string) (Device, bool) {
	for _, d := range devs {
		if d.Name == name {
			return d, true
		}
	}
	return Device{}, false
}

// ErrNotFound is returned (wrapped) when no partition carries the name.
var ErrNotFound = errors.New("partition not found")

// Wait polls sysfs every poll until partitions named by all of names exist,
// or ctx ends. It returns the last listing either way, so a caller can
// report what it did find. tick, if not nil, runs before each look (stage 1
// loads drivers for devices that appeared meanwhile, a USB disk).
func Wait(ctx context.Context, sysRoot string, names []string, poll time.Duration, tick func()) ([]Device, error) {
	for {
		if tick != nil {
			tick()
		}
		devs, err := List(sysRoot)
		missing := ""
		if err == nil {
			for _, n := range names {
				if _, e := ByPartName(devs, n); e != nil {
					missing = n
					err = e
					break
				}
			}
		}
		if err == nil {
			return devs, nil
		}
		select {
		case <-ctx.Done():
			if missing != "" {
				return devs, fmt.Errorf("waited for partition %q: %w", missing, err)
			}
			return devs, err
		case <-time.After(poll):
		}
	}
}

// Describe formats devs as a table for an operator: name, size, GPT name.
func Describe(devs []Device) string {
	if len(devs) == 0 {
		return "  (no block devices: is the disk driver module missing?)\n"
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "  DEVICE\tSIZE\tPARTNAME")
	for _, d := range devs {
		name := d.PartName
		if !d.IsPartition() {
			name = "(disk)"
		} else if name == "" {
			name = "(none)"
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", d.Name, HumanSize(d.Size), name)
	}
	w.Flush()
	return b.String()
}

// HumanSize formats a byte count with a binary unit.
func HumanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
