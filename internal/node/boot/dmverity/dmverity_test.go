package dmverity

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/verity"
)

func TestTargetSpec(t *testing.T) {
	for _, params := range []string{"", "1", "1234567", "12345678", strings.Repeat("x", 300)} {
		b := targetSpec(8, 4096, "verity", params)
		if len(b)%8 != 0 || len(b) < unix.SizeofDmTargetSpec+len(params)+1 {
			t.Errorf("params %d bytes: spec is %d bytes, want a multiple of 8 with room for a NUL", len(params), len(b))
		}
		s := (*unix.DmTargetSpec)(unsafe.Pointer(&b[0]))
		if s.Sector_start != 8 || s.Length != 4096 || int(s.Next) != len(b) || cstring(s.Target_type[:]) != "verity" {
			t.Errorf("spec header %+v", *s)
		}
		if got := cstring(b[unix.SizeofDmTargetSpec:]); got != params {
			t.Errorf("params read back %q, want %q", got, params)
		}
	}
}

func TestIoctlRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", strings.Repeat("n", unix.DM_NAME_LEN)} {
		if _, err := ioctl(^uintptr(0), unix.DM_DEV_CREATE, name, 0, nil); err == nil || !strings.Contains(err.Error(), "dm device name") {
			t.Errorf("name of %d bytes: err %v, want a name error", len(name), err)
		}
	}
}

// TestOpenReadCorruptRemove maps a real squashfs and hash tree made by
// mksquashfs and veritysetup on a loop device, reads it back, flips a byte
// and checks that the read fails and the status says so. It needs root
// and a kernel with device-mapper (the boot tests exercise the same calls
// in the VM when the host has none).
func TestOpenReadCorruptRemove(t *testing.T) {
	requireDM(t)
	dir := t.TempDir()
	img, sq, p := makeVerityImage(t, dir)
	loop := losetup(t, img)

	name := "kestrel-test-" + strconv.Itoa(os.Getpid())
	d, err := Open(Control, "/dev", name, p, loop)
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			Remove(Control, name)
		}
	})
	got, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatalf("read %s: %v", d.Path, err)
	}
	if !bytes.Equal(got, sq) {
		t.Fatalf("%s reads %d bytes that differ from the %d-byte squashfs", d.Path, len(got), len(sq))
	}
	if n, err := Check(context.Background(), d.Path); err != nil || n != int64(len(sq)) {
		t.Fatalf("Check: %d bytes, %v; want %d, nil", n, err, len(sq))
	}
	if st, err := TableStatus(Control, name); err != nil || st.Target != "verity" || st.Corrupt() {
		t.Fatalf("status %+v, %v; want verity, not corrupt", st, err)
	}
	if err := Remove(Control, name); err != nil {
		t.Fatal(err)
	}
	removed = true
	if _, err := os.Stat(filepath.Join("/sys/block", filepath.Base(d.Path))); err == nil {
		t.Errorf("%s still exists after Remove", d.Path)
	}

	// Flip one byte of the third data block under the mapping.
	const bad = 2
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, bad*verity.BlockSize+100)
	b[0] ^= 0xff
	f.WriteAt(b, bad*verity.BlockSize+100)
	f.Close()
	loop = losetup(t, img) // a fresh loop device: no cached pages of the good data

	d, err = Open(Control, "/dev", name, p, loop)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(Control, name) })
	_, err = Check(context.Background(), d.Path)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Block != bad || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Check of the flipped image: %v; want block %d failing with EIO", err, bad)
	}
	if st, err := TableStatus(Control, name); err != nil || !st.Corrupt() {
		t.Fatalf("status %+v, %v; want corruption reported", st, err)
	}
}

func requireDM(t *testing.T) {
	t.Helper()
	exec.Command("modprobe", "dm-verity").Run()
	f, err := os.OpenFile(Control, os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no device-mapper here (%v): the boot tests exercise dm-verity in the VM", err)
	}
	f.Close()
	for _, tool := range []string{"mksquashfs", "veritysetup", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (scripts/deps.sh)", tool)
		}
	}
}

// makeVerityImage writes a squashfs padded to whole blocks followed by its
// hash tree, as the builder lays out a root partition.
func makeVerityImage(t *testing.T, dir string) (img string, squashfs []byte, p verity.Params) {
	t.Helper()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	for i := range 64 {
		os.WriteFile(filepath.Join(src, "f"+strconv.Itoa(i)), bytes.Repeat([]byte{byte(i)}, 10000+i), 0o644)
	}
	img = filepath.Join(dir, "root.img")
	run(t, "mksquashfs", src, img, "-noappend", "-quiet", "-no-compression")
	sq, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if pad := len(sq) % verity.BlockSize; pad != 0 {
		sq = append(sq, make([]byte, verity.BlockSize-pad)...)
	}
	if err := os.WriteFile(img, sq, 0o644); err != nil {
		t.Fatal(err)
	}
	p = verity.Params{Salt: "00ff", DataBlocks: uint64(len(sq) / verity.BlockSize), HashOffset: uint64(len(sq))}
	out := run(t, "veritysetup", "format", "--no-superblock", "--salt", p.Salt,
		"--hash-offset", strconv.FormatUint(p.HashOffset, 10), "--data-blocks", strconv.FormatUint(p.DataBlocks, 10), img, img)
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Root hash" {
			p.RootHash = strings.TrimSpace(v)
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("veritysetup output %q: %v", out, err)
	}
	return img, sq, p
}

func losetup(t *testing.T, img string) string {
	t.Helper()
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", "--read-only", img))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestNodeByName(t *testing.T) {
	sys := t.TempDir()
	for dev, name := range map[string]string{"dm-0": "other", "dm-3": RootName, "vda": ""} {
		dir := filepath.Join(sys, "block", dev)
		os.MkdirAll(dir, 0o755)
		if name != "" {
			os.MkdirAll(filepath.Join(dir, "dm"), 0o755)
			os.WriteFile(filepath.Join(dir, "dm", "name"), []byte(name+"\n"), 0o644)
		}
	}
	if got, err := NodeByName(sys, "/dev", RootName); err != nil || got != "/dev/dm-3" {
		t.Errorf("NodeByName = %q, %v; want /dev/dm-3", got, err)
	}
	if _, err := NodeByName(sys, "/dev", "missing"); err == nil || !strings.Contains(err.Error(), "dm device missing") {
		t.Errorf("missing device: err %v", err)
	}
}
