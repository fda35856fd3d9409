package boottest

import (
	"fmt"
	"os"
	"os/exec"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// corruptPartition copies image to dst (sparse) and zeroes the first MiB of
// the GPT partition with the given name, as a flash-card fault would.
func corruptPartition(image, dst, name string) error {
	if out, err := exec.Command("cp", "--sparse=always", image, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %w: %s", image, err, out)
	}
	d, err := diskfs.Open(dst)
	if err != nil {
		return fmt.Errorf("open %s: %w", dst, err)
	}
	table, err := d.GetPartitionTable()
	d.Close()
	if err != nil {
		return fmt.Errorf("partition table of %s: %w", dst, err)
	}
	gt, ok := table.(*gpt.Table)
	if !ok {
		return fmt.Errorf("%s: not a GPT disk", dst)
	}
	for _, p := range gt.Partitions {
		if p.Name != name {
			continue
		}
		f, err := os.OpenFile(dst, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteAt(make([]byte, 1<<20), int64(p.Start)*int64(gt.LogicalSectorSize))
		return err
	}
	return fmt.Errorf("%s: no partition named %q", dst, name)
}
