package datasource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// NoCloudLabel is the filesystem label of a NoCloud disk (matched without
// regard to case: genisoimage writes "cidata", mkfs.vfat "CIDATA").
const NoCloudLabel = "CIDATA"

// NoCloud finds a vfat or iso9660 filesystem labelled CIDATA on one of
// the candidate devices (whole disks or partitions, or image files) and
// reads user-data and meta-data from its root. Reading goes through
// go-diskfs, so nothing is mounted.
type NoCloud struct {
	// Devices lists the candidates; BlockDevices gives the machine's.
	Devices func() ([]string, error)

	found string
}

// Name implements Source.
func (n *NoCloud) Name() string {
	if n.found != "" {
		return "nocloud:" + n.found
	}
	return "nocloud"
}

// BlockDevices lists the block devices named in sysClassBlock
// (/sys/class/block) as paths under devDir (/dev), partitions included,
// skipping loop, ram and zram devices.
func BlockDevices(sysClassBlock, devDir string) func() ([]string, error) {
	return func() ([]string, error) {
		ents, err := os.ReadDir(sysClassBlock)
		if err != nil {
			return nil, fmt.Errorf("list block devices: %w", err)
		}
		var out []string
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
				continue
			}
			out = append(out, filepath.Join(devDir, n))
		}
		sort.Strings(out)
		return out, nil
	}
}

// NoCloudCandidates is BlockDevices without Kestrel's own filesystems:
// the slots' roots and the state partition (by GPT partition name), the
// dm-verity mapping of the running root, and on a disk that holds one of
// those partitions (the one Kestrel is installed on) the whole disk and
// its ESP. None of them can be a NoCloud disk, and opening them is the
// dearest part of the probe: go-diskfs reads a squashfs's and an ext4's
// metadata, and a FAT's allocation table, to find there is no label. That
// was 0.16 s of the config phase on every boot under qemu's TCG, and the
// whole disk and the ESP 0.15 s more. A partition named "esp" on any
// other disk (a stick someone prepared) is still probed.
func NoCloudCandidates(sysClassBlock, devDir string) func() ([]string, error) {
	own := map[string]bool{layout.PartState: true}
	for _, s := range layout.Slots {
		own[layout.RootPartition(s)] = true
	}
	all := BlockDevices(sysClassBlock, devDir)
	return func() ([]string, error) {
		devs, err := all()
		skip := map[string]bool{}
		for _, d := range devs {
			dev := filepath.Base(d)
			dir := filepath.Join(sysClassBlock, dev)
			if dm, _ := os.ReadFile(filepath.Join(dir, "dm", "name")); strings.TrimSpace(string(dm)) == layout.VerityRootName {
				skip[dev] = true
			}
			// A whole disk lists its partitions as subdirectories.
			parts, _ := filepath.Glob(filepath.Join(dir, dev+"*", "uevent"))
			ours := false
			for _, u := range parts {
				if own[partName(u)] {
					ours = true
				}
			}
			if ours {
				skip[dev] = true
				for _, u := range parts {
					if n := partName(u); own[n] || n == layout.PartESP {
						skip[filepath.Base(filepath.Dir(u))] = true
					}
				}
			}
			if own[partName(filepath.Join(dir, "uevent"))] {
				skip[dev] = true
			}
		}
		var out []string
		for _, d := range devs {
			if !skip[filepath.Base(d)] {
				out = append(out, d)
			}
		}
		return out, err
	}
}

// partName is the PARTNAME of a block device's uevent file ("" when it has
// none or cannot be read).
func partName(uevent string) string {
	b, _ := os.ReadFile(uevent)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PARTNAME="); ok {
			return v
		}
	}
	return ""
}

// Probe implements Source: it looks for the CIDATA label.
func (n *NoCloud) Probe(ctx context.Context) (bool, error) {
	devs, err := n.Devices()
	if err != nil {
		return false, err
	}
	for _, d := range devs {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		fsys, closeFn, err := openFS(d)
		if err != nil {
			continue // not a filesystem go-diskfs knows: not ours
		}
		label := strings.Trim(fsys.Label(), "\x00 \t\n")
		closeFn()
		if strings.EqualFold(label, NoCloudLabel) {
			n.found = d
			return true, nil
		}
	}
	return false, nil
}

// Fetch implements Source.
func (n *NoCloud) Fetch(ctx context.Context) (*Data, error) {
	if n.found == "" {
		return nil, errors.New("no CIDATA filesystem probed")
	}
	fsys, closeFn, err := openFS(n.found)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", n.found, err)
	}
	defer closeFn()
	d := &Data{Name: n.Name()}
	ud, err := readAny(fsys, "user-data")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: read user-data: %w", n.found, err)
	}
	d.UserData = ud
	md, err := readAny(fsys, "meta-data")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: read meta-data: %w", n.found, err)
	}
	if len(md) > 0 {
		if d.Meta, err = parseNoCloudMeta(md); err != nil {
			return nil, fmt.Errorf("%s: meta-data: %w", n.found, err)
		}
	}
	return d, nil
}

// parseNoCloudMeta reads the NoCloud meta-data keys Kestrel uses
// (instance-id, local-hostname, public-keys); others are ignored, as
// cloud-init does.
func parseNoCloudMeta(b []byte) (Meta, error) {
	var raw struct {
		InstanceID    string `yaml:"instance-id"`
		LocalHostname string `yaml:"local-hostname"`
		Hostname      string `yaml:"hostname"`
		PublicKeys    any    `yaml:"public-keys"`
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return Meta{}, err
	}
	m := Meta{InstanceID: raw.InstanceID, Hostname: raw.LocalHostname}
	if m.Hostname == "" {
		m.Hostname = raw.Hostname
	}
	switch k := raw.PublicKeys.(type) {
	case string:
		m.PublicKeys = []string{k}
	case []any:
		for _, v := range k {
			m.PublicKeys = append(m.PublicKeys, fmt.Sprint(v))
		}
	case map[string]any:
		names := make([]string, 0, len(k))
		for n := range k {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			m.PublicKeys = append(m.PublicKeys, fmt.Sprint(k[n]))
		}
	}
	return m, nil
}

func openFS(path string) (filesystem.FileSystem, func(), error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, nil, err
	}
	fsys, err := d.GetFilesystem(0)
	if err != nil && !d.DefaultBlocks {
		// On a block device go-diskfs reads iso9660 with the device's
		// physical block size (512) instead of the ISO's own 2048-byte
		// blocks, and finds nothing: try again with the defaults.
		d.DefaultBlocks = true
		fsys, err = d.GetFilesystem(0)
	}
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return fsys, func() { fsys.Close(); d.Close() }, nil
}

// readAny reads a file from the filesystem root, also under the names an
// ISO without Rock Ridge or Joliet gives it (USER_DAT.;1 and the like).
func readAny(fsys filesystem.FileSystem, name string) ([]byte, error) {
	up := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	for _, n := range []string{name, "/" + name, strings.ToUpper(name), up, up[:8], up[:8] + ".;1", up + ".;1"} {
		b, err := readFile(fsys, strings.TrimPrefix(n, "/"))
		if err == nil {
			return b, nil
		}
		if b, err := readFile(fsys, n); err == nil {
			return b, nil
		}
	}
	return nil, fs.ErrNotExist
}

// maxFile bounds user-data and meta-data.
const maxFile = 16 << 20

// readFile reads a whole file with a single Read of its size: go-diskfs
// v1.9's FAT readers pad a Read that starts inside a cluster out to the
// cluster's end, so io.ReadAll (512-byte steps) got NULs after any file
// longer than 512 bytes.
func readFile(fsys filesystem.FileSystem, name string) ([]byte, error) {
	fi, err := fsys.Stat(name)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", name, fi.Size(), maxFile)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}
