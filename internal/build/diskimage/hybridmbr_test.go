package diskimage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// TestHybridMBR builds an SD image and reads it back as the Pi's boot ROM
// (MBR, with util-linux's fdisk) and as Linux (GPT) would, then rewrites
// the GPT the way the node's growpart does and checks the MBR survived.
func TestHybridMBR(t *testing.T) {
	needTools(t, "fdisk", "mkfs.ext4")
	dir := t.TempDir()
	root := filepath.Join(dir, "root.squashfs")
	if err := os.WriteFile(root, bytes.Repeat([]byte("hsqs"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Arch: "arm64", Seed: "sd", ESPMiB: 40, RootMiB: 4, StateMiB: 16, RootA: root,
		ESPData: map[string][]byte{"/config.txt": []byte("kernel=u-boot.bin\n")}, HybridMBR: true, PowerOfTwo: true}
	img := filepath.Join(dir, "sd.img")
	if err := Build(spec, img); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 128<<20 {
		t.Errorf("image is %d bytes, want 128 MiB (66 MiB rounded up to a power of two)", st.Size())
	}

	out, err := exec.Command("fdisk", "-l", "-t", "dos", img).CombinedOutput()
	if err != nil {
		t.Fatalf("fdisk: %v\n%s", err, out)
	}
	// Device Boot Start End Sectors Size Id Type
	var rows [][]string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, img) {
			rows = append(rows, strings.Fields(strings.TrimPrefix(line, img)))
		}
	}
	if len(rows) != 2 || strings.Join(rows[0][:5], " ") != "1 * 2048 83967 81920" || rows[0][6] != "c" || rows[1][5] != "ee" {
		t.Errorf("MBR as fdisk reads it: %q, want the ESP (active, type c, sectors 2048-83967) then the GPT protective entry\n%s", rows, out)
	}

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	f.ReadAt(mbr, 0)
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatalf("GPT behind the hybrid MBR: %v", err)
	}
	if table.Partitions[0].Name != layout.PartESP || table.Partitions[3].Name != layout.PartState {
		t.Errorf("GPT partitions: %s ... %s", table.Partitions[0].Name, table.Partitions[3].Name)
	}
	if err := table.Write(f, st.Size()); err != nil {
		t.Fatal(err)
	}
	after := make([]byte, 512)
	f.ReadAt(after, 0)
	if !bytes.Equal(mbr, after) {
		t.Error("rewriting the GPT (as growpart does) replaced the hybrid MBR")
	}
}

func TestNextPowerOfTwo(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{{1, 1}, {2, 2}, {3, 4}, {66 << 20, 128 << 20}, {2 << 30, 2 << 30}, {2<<30 + 1, 4 << 30}} {
		if got := nextPowerOfTwo(tc.in); got != tc.want {
			t.Errorf("nextPowerOfTwo(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
