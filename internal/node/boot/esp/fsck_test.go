package esp

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFsckFAT damages real FAT32 images the ways a power cut in the middle
// of a write leaves them, checks that the real fsck.fat -n sees the damage,
// runs the Checker, and then reads and writes them with a second FAT
// implementation (mtools): fsck.fat -n is clean, the undamaged file reads
// back whole, and a new file can be written, read and deleted. (The host
// kernel here has no vfat driver to loop-mount them; the qemu power-cut
// test, TestUpgradePowerCut, covers the kernel's side.)
func TestFsckFAT(t *testing.T) {
	fsck := "/sbin/fsck.fat"
	for _, tool := range []string{fsck, "mkfs.fat", "mcopy", "mtype", "mdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: run scripts/deps.sh", tool)
		}
	}
	t.Setenv("MTOOLS_SKIP_CHECK", "1")
	keep := bytes.Repeat([]byte("config.yaml stays\n"), 300) // 5.4 KB: several clusters

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, im *fatImage)
		found  string // what fsck.fat -n says before the repair ("": clean)
		rec    bool   // fsck.fat -a saves a lost chain as FSCK0000.REC
	}{
		{"clean", func(*testing.T, *fatImage) {}, "", false},
		{"entry points at a free chain", func(t *testing.T, im *fatImage) {
			// The entry reached the disk, the FAT's allocation did not.
			_, start, _ := im.entry(t, "KERNEL  EFI")
			for c := start; c >= 2 && c < 0x0FFFFFF8; {
				next := im.fat(t, c)
				im.setFAT(t, c, 0)
				c = next
			}
		}, "free cluster", false},
		{"two entries share a chain", func(t *testing.T, im *fatImage) {
			// A cut rename: the new name's entry points at the old file's
			// clusters while the old entry still does too.
			_, start, _ := im.entry(t, "KERNEL  EFI")
			off, _, size := im.entry(t, "ENTRY   CON")
			im.setEntry(t, off, start, size)
		}, "share clusters", true},
		{"chain without an entry", func(t *testing.T, im *fatImage) {
			// Clusters allocated for a file whose entry never made it.
			_, start, size := im.entry(t, "KERNEL  EFI")
			free := start + size/im.clusterBytes() + 100
			im.setFAT(t, free, free+1)
			im.setFAT(t, free+1, 0x0FFFFFFF)
		}, "unused clusters", true},
		{"size past the chain's end", func(t *testing.T, im *fatImage) {
			off, start, _ := im.entry(t, "ENTRY   CON")
			im.setEntry(t, off, start, 10*im.clusterBytes())
		}, "cluster chain length is", false},
		{"dirty bit of a cut mount", func(t *testing.T, im *fatImage) {
			im.write(t, 65, []byte{1}) // FAT32 BS_Reserved1, the kernel's dirty flag
		}, "Dirty bit is set", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "esp.img")
			run(t, "mkfs.fat", "-F", "32", "-C", img, "65536") // 64 MiB
			for name, data := range map[string][]byte{
				"KERNEL.EFI":  bytes.Repeat([]byte("kernel"), 20000),
				"ENTRY.CON":   []byte("title Kestrel\n"),
				"CONFIG.YML":  keep,
				"NOTHING.TXT": nil,
			} {
				src := filepath.Join(dir, name)
				if err := os.WriteFile(src, data, 0o644); err != nil {
					t.Fatal(err)
				}
				run(t, "mcopy", "-i", img, src, "::/"+name)
			}
			im := openFAT(t, img)
			tc.damage(t, im)
			im.f.Close()

			out, err := exec.Command(fsck, "-n", img).CombinedOutput()
			if tc.found == "" && err != nil || tc.found != "" && (err == nil || !strings.Contains(string(out), tc.found)) {
				t.Fatalf("before the repair, fsck.fat -n: %v, want it to say %q:\n%s", err, tc.found, out)
			}

			repaired, err := FsckFAT(fsck)(img)
			if err != nil {
				t.Fatalf("check: %v (repaired %q)", err, repaired)
			}
			if (repaired == "") != (tc.found == "") || !strings.Contains(repaired, tc.found) {
				t.Errorf("repaired %q, want a report saying %q", repaired, tc.found)
			}
			if strings.Contains(repaired, "conversion") || strings.HasPrefix(repaired, "fsck.fat") {
				t.Errorf("report keeps fsck.fat's noise: %q", repaired)
			}

			if out, err := exec.Command(fsck, "-n", img).CombinedOutput(); err != nil {
				t.Errorf("after the repair, fsck.fat -n: %v\n%s", err, out)
			}
			if _, err := exec.Command("mtype", "-i", img, "::/FSCK0000.REC").Output(); (err == nil) != tc.rec {
				t.Errorf("FSCK0000.REC: read error %v, want one to exist: %v", err, tc.rec)
			}
			if got := run(t, "mtype", "-i", img, "::/CONFIG.YML"); got != string(keep) {
				t.Errorf("CONFIG.YML after the repair: %d bytes, want %d", len(got), len(keep))
			}
			fresh := filepath.Join(dir, "NEW.CON")
			if err := os.WriteFile(fresh, bytes.Repeat([]byte("new entry\n"), 1000), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "mcopy", "-i", img, fresh, "::/NEW.CON")
			if got := run(t, "mtype", "-i", img, "::/NEW.CON"); len(got) != 10000 {
				t.Errorf("NEW.CON read back: %d bytes, want 10000", len(got))
			}
			run(t, "mdel", "-i", img, "::/NEW.CON", "::/KERNEL.EFI")
			if out, err := exec.Command(fsck, "-n", img).CombinedOutput(); err != nil {
				t.Errorf("after writing and deleting, fsck.fat -n: %v\n%s", err, out)
			}
		})
	}
}

// TestFsckFATFails: what fsck.fat cannot repair, or a missing fsck.fat,
// is an error (Mount warns and mounts anyway).
func TestFsckFATFails(t *testing.T) {
	fsck := "/sbin/fsck.fat"
	if _, err := exec.LookPath("mkfs.fat"); err != nil {
		t.Skip("mkfs.fat not installed")
	}
	if _, err := os.Stat(fsck); err != nil {
		t.Skip("fsck.fat not installed")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "esp.img")
	run(t, "mkfs.fat", "-F", "32", "-C", img, "65536")
	im := openFAT(t, img)
	im.write(t, 0, make([]byte, 512)) // the boot sector: fsck.fat does not rebuild it
	im.f.Close()
	for _, tc := range []struct {
		name, bin, dev, err string
	}{
		{"no boot sector", fsck, img, "fsck.fat -a -w " + img + ": errors left"},
		{"no fsck.fat in the image", filepath.Join(dir, "sbin/fsck.fat"), img, "not checked: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FsckFAT(tc.bin)(tc.dev)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if e, ok := err.(*exec.ExitError); ok {
			stderr = e.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// fatImage edits a FAT32 image in place: its FATs and the 8.3 entries of
// its root directory's first cluster. Written here, not taken from a
// library, because the point is to write what no FAT library would.
type fatImage struct {
	f                                    *os.File
	bps, spc, reserved, fats, fatSectors uint32
	rootCluster                          uint32
}

func openFAT(t *testing.T, path string) *fatImage {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	return &fatImage{f: f,
		bps: uint32(le.Uint16(b[11:])), spc: uint32(b[13]), reserved: uint32(le.Uint16(b[14:])),
		fats: uint32(b[16]), fatSectors: le.Uint32(b[36:]), rootCluster: le.Uint32(b[44:])}
}

func (im *fatImage) clusterBytes() uint32 { return im.bps * im.spc }

func (im *fatImage) fatOffset(copy, cluster uint32) int64 {
	return int64(im.reserved+copy*im.fatSectors)*int64(im.bps) + int64(cluster)*4
}

func (im *fatImage) clusterOffset(cluster uint32) int64 {
	return (int64(im.reserved+im.fats*im.fatSectors) + int64(cluster-2)*int64(im.spc)) * int64(im.bps)
}

func (im *fatImage) fat(t *testing.T, cluster uint32) uint32 {
	b := im.read(t, im.fatOffset(0, cluster), 4)
	return binary.LittleEndian.Uint32(b) & 0x0FFFFFFF
}

// setFAT sets a cluster's entry in every FAT copy.
func (im *fatImage) setFAT(t *testing.T, cluster, v uint32) {
	b := binary.LittleEndian.AppendUint32(nil, v)
	for c := uint32(0); c < im.fats; c++ {
		im.write(t, im.fatOffset(c, cluster), b)
	}
}

// entry finds the root directory entry named name (11 bytes, 8.3 padded)
// and returns its offset, start cluster and size.
func (im *fatImage) entry(t *testing.T, name string) (int64, uint32, uint32) {
	t.Helper()
	base := im.clusterOffset(im.rootCluster)
	dir := im.read(t, base, int(im.clusterBytes()))
	for i := 0; i+32 <= len(dir); i += 32 {
		e := dir[i : i+32]
		if string(e[:11]) == name && e[11]&0x0F != 0x0F {
			le := binary.LittleEndian
			return base + int64(i), uint32(le.Uint16(e[20:]))<<16 | uint32(le.Uint16(e[26:])), le.Uint32(e[28:])
		}
	}
	t.Fatalf("no root entry %q", name)
	return 0, 0, 0
}

func (im *fatImage) setEntry(t *testing.T, off int64, start, size uint32) {
	le := binary.LittleEndian
	im.write(t, off+20, le.AppendUint16(nil, uint16(start>>16)))
	im.write(t, off+26, le.AppendUint16(nil, uint16(start)))
	im.write(t, off+28, le.AppendUint32(nil, size))
}

func (im *fatImage) read(t *testing.T, off int64, n int) []byte {
	b := make([]byte, n)
	if _, err := im.f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func (im *fatImage) write(t *testing.T, off int64, b []byte) {
	if _, err := im.f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
