package diskimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// TestESPSizes formats ESPs of a spread of sizes, around each kind of size
// go-diskfs v1.9.4 gets wrong, and checks every one with fsck.fat -n: a
// size CheckESPSize accepts must be written and pass, a size it refuses
// must be refused by the writer, and really be one that go-diskfs formats
// wrongly. The test behind the slow tag does every MiB up to 4200.
func TestESPSizes(t *testing.T) {
	checkESPSizes(t, []int64{
		1, 32, 63, 64, 65, 100, 128, 129, 130, 194, 256, 259, 260, 261,
		504, 505, 506, 507, 508, 512, 763, 1018, 1020, 1024, 2046, 4096,
	})
}

func checkESPSizes(t *testing.T, sizes []int64) {
	needTools(t, "fsck.fat")
	dir := t.TempDir()
	spec := Spec{Seed: "sizes", Time: 1700000000, ESPData: map[string][]byte{
		layout.ESPLoaderConf: []byte("timeout 0\n"), // in a subdirectory: its ".." is fixed
		"/README.TXT":        []byte("top level\n"),
	}}
	var refused []int64
	for _, size := range sizes {
		img := filepath.Join(dir, "esp.img")
		os.Remove(img) // the last size's
		d, err := diskfs.Create(img, size*mib, diskfs.SectorSize512)
		if err != nil {
			t.Fatal(err)
		}
		err = writeESP(d, 0, 0, size*mib, spec)
		d.Close()
		if CheckESPSize(size) != nil {
			refused = append(refused, size)
			if err == nil || !strings.Contains(err.Error(), "go-diskfs/issues/418") {
				t.Errorf("%d MiB: writeESP = %v, want it refused", size, err)
			}
			// The refusal is no stricter than it must be: go-diskfs itself
			// really formats this size wrongly.
			if out, err := fsckFAT(t, bareFAT32(t, dir, size)); err == nil {
				t.Errorf("%d MiB is refused, but go-diskfs formats it so that fsck.fat passes:\n%s", size, out)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d MiB: %v", size, err)
			continue
		}
		if out, err := fsckFAT(t, img); err != nil {
			t.Errorf("%d MiB: fsck.fat -n: %v\n%s", size, err, out)
		}
	}
	t.Logf("refused %v of %d sizes", refused, len(sizes))
}

// bareFAT32 formats a file of size MiB with go-diskfs alone (no checks,
// no fixes) and returns its path.
func bareFAT32(t *testing.T, dir string, size int64) string {
	t.Helper()
	img := filepath.Join(dir, "bare.img")
	os.Remove(img)
	d, err := diskfs.Create(img, size*mib, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeFat32, Reproducible: true}); err != nil {
		t.Fatal(err)
	}
	return img
}

func fsckFAT(t *testing.T, img string) (string, error) {
	t.Helper()
	out, err := exec.Command("fsck.fat", "-n", img).CombinedOutput()
	return string(out), err
}
