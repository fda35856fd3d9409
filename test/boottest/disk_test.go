package boottest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// diskWithOptions copies image to dst (copyDisk) and adds words to the
// kernel command line of every boot entry on the copy's ESP.
func diskWithOptions(tb testing.TB, image, dst, words string) string {
	tb.Helper()
	if err := copyDisk(image, dst); err != nil {
		tb.Fatal(err)
	}
	editESPEntries(tb, dst, func(entry string) string { return addOptions(entry, words) })
	return dst
}

// copyDisk copies a disk image to dst, keeping it sparse.
func copyDisk(image, dst string) error {
	if out, err := exec.Command("cp", "--sparse=always", image, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %w: %s", image, err, out)
	}
	return nil
}

// findPartition returns the GPT table of an opened disk and the 1-based
// number of the partition with the given name.
func findPartition(d *disk.Disk, path, name string) (*gpt.Table, int, error) {
	table, err := d.GetPartitionTable()
	if err != nil {
		return nil, 0, fmt.Errorf("partition table of %s: %w", path, err)
	}
	gt, ok := table.(*gpt.Table)
	if !ok {
		return nil, 0, fmt.Errorf("%s: not a GPT disk", path)
	}
	for i, p := range gt.Partitions {
		if p.Name == name {
			return gt, i + 1, nil
		}
	}
	return nil, 0, fmt.Errorf("%s: no partition named %q", path, name)
}

// openESP opens the FAT filesystem of disk's ESP (an image file); close
// closes the disk.
func openESP(t testing.TB, disk string) (fs filesystem.FileSystem, close func()) {
	t.Helper()
	d, err := diskfs.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := findPartition(d, disk, layout.PartESP)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	if fs, err = d.GetFilesystem(n); err != nil {
		d.Close()
		t.Fatalf("ESP of %s: %v", disk, err)
	}
	return fs, func() { d.Close() }
}

// writeESPFile writes data as the file name (an ESP path) on disk's ESP,
// creating it or replacing what it held.
func writeESPFile(t testing.TB, disk, name string, data []byte) {
	t.Helper()
	fs, closeDisk := openESP(t, disk)
	defer closeDisk()
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		t.Fatalf("ESP of %s: %s: %v", disk, name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatalf("ESP of %s: %s: %v", disk, name, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("ESP of %s: %s: %v", disk, name, err)
	}
}

// corruptPartition copies image to dst (sparse) and zeroes the first MiB of
// the GPT partition with the given name, as a flash-card fault would.
func corruptPartition(image, dst, name string) error {
	if err := copyDisk(image, dst); err != nil {
		return err
	}
	d, err := diskfs.Open(dst)
	if err != nil {
		return fmt.Errorf("open %s: %w", dst, err)
	}
	gt, n, err := findPartition(d, dst, name)
	d.Close()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(make([]byte, 1<<20), int64(gt.Partitions[n-1].Start)*int64(gt.LogicalSectorSize))
	return err
}
