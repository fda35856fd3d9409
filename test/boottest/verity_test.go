package boottest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/dmverity"
	"github.com/kestrel-os/kestrel/internal/verity"
	"github.com/kestrel-os/kestrel/test/vm"
)

// TestVerityRoot boots an untampered verity image: / is the squashfs read
// through the dm-verity device, whose status is "V", and reading the whole
// root (what stage 2 runs in the background) finds no bad block. It logs
// the check's throughput under TCG. Its CPU is qemu's "max", with SSSE3
// to AVX2 and SSE4.2: dm-verity hashes with sha256-avx2 and ext4 sums
// with crc32c-intel, which stage 1 loaded for that CPU.
func TestVerityRoot(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	vd := verityDisk(t, img, filepath.Join(dir, "verity.img"), "")
	m, ready := bootVM(t, vm.Config{Disk: vd.path, Dir: dir, CPU: "max"})
	if ready["slot"] != "a" {
		t.Errorf("ready line names slot %q, want a", ready["slot"])
	}
	assertVerifiedRoot(t, m)
	assertHashDrivers(t, m, "sha256-avx2", "crc32c-intel")
	out, err := m.MustRun("kestrel verity check", 5*time.Minute)
	if err != nil || !strings.Contains(out, "every block verified") {
		t.Fatalf("kestrel verity check: %q, %v", out, err)
	}
	t.Logf("full check of the %d-byte root in the VM: %s", vd.params.DataBlocks*verity.BlockSize, strings.TrimSpace(out))
	// The other slot's root, with the parameters of its entry, through a
	// mapping that is removed afterwards.
	out, err = m.MustRun("kestrel verity check-slot b", 5*time.Minute)
	if err != nil || !strings.Contains(out, "every block verified") {
		t.Fatalf("kestrel verity check-slot b: %q, %v", out, err)
	}
	t.Logf("check of slot b: %s", strings.TrimSpace(out))
	assertOnlyRootMapped(t, m)

	// Corruption where boot never reads: write over a data block in the
	// middle of the partition under the live mapping (dm-verity reads
	// data blocks from the disk on every read, caching only hashes). The
	// full check must name that block, and the status turn to "C".
	bad := vd.params.DataBlocks / 2
	part := strings.TrimSpace(mustRun(t, m, "ls /sys/class/block/dm-0/slaves"))
	mustRun(t, m, fmt.Sprintf("echo -n KESTREL-TAMPER | dd of=/dev/%s bs=1 seek=%d conv=notrunc,fsync 2>/dev/null", part, bad*verity.BlockSize+123))
	out, rc, err := m.Run("kestrel verity check 2>&1", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("data block %d (bytes %d-%d) fails verification: input/output error", bad, bad*verity.BlockSize, (bad+1)*verity.BlockSize-1); rc != 1 || !strings.Contains(out, want) {
		t.Errorf("check after tampering: exit %d, %q; want 1 and %q", rc, out, want)
	}
	if st, rc, _ := m.Run("kestrel verity status", cmdTimeout); rc != 1 || !strings.Contains(st, dmverity.RootName+": verity C") {
		t.Errorf("status after tampering: exit %d, %q; want 1 and verity C", rc, st)
	}
}

func mustRun(t *testing.T, m *vm.VM, cmd string) string {
	t.Helper()
	out, err := m.MustRun(cmd, cmdTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVerityTamperFallsBack flips one byte of root A's squashfs in data
// block 0 (the block holding the squashfs superblock, which mounting
// reads first; the byte itself is just past the 96-byte superblock, so
// squashfs alone would not notice it) on a disk whose slot B holds a
// verified copy of the same release, as an upgrade would leave it. Stage 1
// must refuse A with a verity message, demote A's entry to an exhausted
// one, reboot after the rescue window, and come up on slot B.
func TestVerityTamperFallsBack(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	vd := verityDisk(t, img, filepath.Join(dir, "tampered.img"), "kestrel.rescue_timeout=5")
	flipByte(t, vd.path, vd.rootA+100)

	m, err := vm.Start(vm.Config{Disk: vd.path, Dir: dir, Log: consoleLog(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	if _, err := m.Expect(regexp.MustCompile(`fails dm-verity verification[^\n]*\n`), bootTimeout); err != nil {
		t.Fatalf("no verity refusal: %v\n%s", err, tail(m.Console(), 40))
	}
	if _, err := m.Expect(regexp.MustCompile(`boot entry demoted to /loader/entries/kestrel-a\+0-1\.conf`), cmdTimeout); err != nil {
		t.Fatalf("entry not demoted: %v\n%s", err, tail(m.Console(), 40))
	}
	// The reboot after the rescue window ends qemu (-no-reboot).
	if code, err := m.Wait(2 * time.Minute); err != nil || code != 0 {
		t.Fatalf("no reboot after the rescue window: qemu exit %d, %v\n%s", code, err, tail(m.Console(), 30))
	}
	console := m.Console()
	var said []string
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "kestrel:") {
			said = append(said, strings.TrimSpace(l))
		}
	}
	t.Logf("first boot, stage 1 said:\n%s", strings.Join(said, "\n"))
	for _, want := range []string{"slot a refused", layout.PartRootA, "rescue shell", "so that the boot loader can fall back"} {
		if !strings.Contains(console, want) {
			t.Errorf("first boot's console lacks %q:\n%s", want, tail(console, 40))
		}
	}

	m2, ready := bootVM(t, vm.Config{Disk: vd.path, Dir: dir})
	if ready["slot"] != "b" {
		t.Errorf("after the refusal the ready line names slot %q, want b: %v", ready["slot"], ready)
	}
	if out, _ := m2.MustRun("cat /proc/cmdline", cmdTimeout); !strings.Contains(out, layout.CmdlineSlot+"=b") {
		t.Errorf("/proc/cmdline %q: not slot b", out)
	}
	assertVerifiedRoot(t, m2)
	out, rc, err := m2.Run("kestrel verity check-slot a 2>&1", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := "data block 0 (bytes 0-4095) fails verification: input/output error"; rc != 1 || !strings.Contains(out, want) {
		t.Errorf("check of the tampered slot a: exit %d, %q; want 1 and %q", rc, out, want)
	}
	assertOnlyRootMapped(t, m2)
	if out, _ := m2.MustRun("ls "+layout.ESPMount+layout.ESPEntriesDir, cmdTimeout); !strings.Contains(out, "kestrel-a+0-1.conf") || !strings.Contains(out, "kestrel-b.conf") {
		t.Errorf("entries on the ESP: %q; want kestrel-a+0-1.conf and kestrel-b.conf", out)
	}
}

// assertVerifiedRoot checks that / is mounted from the dm-verity device
// and that the target reports every block read so far as verified.
func assertVerifiedRoot(t *testing.T, m *vm.VM) {
	t.Helper()
	out, err := m.MustRun("grep '^[^ ]* [^ ]* [^ ]* / / ' /proc/self/mountinfo", cmdTimeout)
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(out, " - ")
	if f := strings.Fields(after); len(f) < 2 || f[0] != "squashfs" || !strings.HasPrefix(f[1], "/dev/dm-") {
		t.Errorf("/ is %q, want squashfs on /dev/dm-N", strings.TrimSpace(out))
	}
	if name, _ := m.MustRun("cat /sys/block/dm-0/dm/name", cmdTimeout); strings.TrimSpace(name) != dmverity.RootName {
		t.Errorf("dm-0 is named %q, want %s", strings.TrimSpace(name), dmverity.RootName)
	}
	if st, err := m.MustRun("kestrel verity status", cmdTimeout); err != nil || !strings.Contains(st, dmverity.RootName+": verity V") {
		t.Errorf("kestrel verity status: %q, %v; want verity V", st, err)
	}
}

// assertOnlyRootMapped checks that a slot check removed its mapping.
func assertOnlyRootMapped(t *testing.T, m *vm.VM) {
	t.Helper()
	if out := strings.Fields(mustRun(t, m, "ls /sys/block")); slices.ContainsFunc(out, func(d string) bool { return strings.HasPrefix(d, "dm-") && d != "dm-0" }) {
		t.Errorf("block devices after the slot check: %v; want dm-0 only", out)
	}
}

// vdisk is a test disk with verity roots in both slots.
type vdisk struct {
	path   string
	rootA  int64 // byte offset of root-a on the disk
	params verity.Params
}

// verityDisk copies the image to dst, whose root-a carries the squashfs
// and its hash tree and whose a entry the kestrel.verity.* keys (as the
// builder writes them), and arranges it as an upgrade leaves it: root-b a
// copy of root-a, /kestrel/b the same kernel and initramfs, and
// kestrel-b.conf an entry for it with a lower version, so the loader
// tries a first. extraA is added to a's options.
func verityDisk(t *testing.T, img *Image, dst, extraA string) vdisk {
	t.Helper()
	for _, tool := range []string{"mtype", "mcopy", "mmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh: mtools)", tool)
		}
	}
	if err := copyDisk(img.Disk, dst); err != nil {
		t.Fatal(err)
	}
	d, err := diskfs.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	off := map[string][2]int64{}
	for _, name := range []string{layout.PartESP, layout.PartRootA, layout.PartRootB} {
		gt, n, err := findPartition(d, dst, name)
		if err != nil {
			t.Fatal(err)
		}
		p := gt.Partitions[n-1]
		ss := int64(gt.LogicalSectorSize)
		off[name] = [2]int64{int64(p.Start) * ss, int64(p.End-p.Start+1) * ss}
	}
	d.Close()
	esp := fmt.Sprintf("%s@@%d", dst, off[layout.PartESP][0])
	entryA := espPath(bls.Entry{Slot: "a"}.FileName())
	entry := runHost(t, "mtype", "-i", esp, "::"+entryA)

	p, ok, err := verity.FromCmdline(optionGetter(entry))
	if err != nil || !ok {
		t.Fatalf("%s: verity parameters %v, %v; want the builder's kestrel.verity.* keys:\n%s", entryA, ok, err, entry)
	}
	used := int64(p.HashOffset + verity.TreeSize(p.DataBlocks))
	copyRange(t, dst, off[layout.PartRootA][0], off[layout.PartRootB][0], min(used, off[layout.PartRootB][1]))
	tmp := t.TempDir()
	runHost(t, "mmd", "-i", esp, "::"+layout.ESPSlotDir+"/b")
	for _, f := range []string{layout.ESPKernelName, layout.ESPInitrdName} {
		local := filepath.Join(tmp, f)
		runHost(t, "mcopy", "-i", esp, "::"+layout.ESPSlotDir+"/a/"+f, local)
		runHost(t, "mcopy", "-i", esp, local, "::"+layout.ESPSlotDir+"/b/"+f)
	}
	entryB := strings.NewReplacer(layout.CmdlineSlot+"=a", layout.CmdlineSlot+"=b", "/a/", "/b/", "(slot a)", "(slot b)",
		"version 0.0.0-test", "version 0.0.0-prev").Replace(entry)
	entry = addOptions(entry, extraA) // a only
	writeESP(t, esp, tmp, entryA, entry)
	writeESP(t, esp, tmp, espPath(bls.Entry{Slot: "b"}.FileName()), entryB)
	return vdisk{path: dst, rootA: off[layout.PartRootA][0], params: p}
}

func optionGetter(entry string) func(string) (string, bool) {
	opts := map[string]string{}
	for _, l := range strings.Split(entry, "\n") {
		if rest, ok := strings.CutPrefix(l, "options "); ok {
			for _, w := range strings.Fields(rest) {
				k, v, _ := strings.Cut(w, "=")
				opts[k] = v
			}
		}
	}
	return func(k string) (string, bool) { v, ok := opts[k]; return v, ok }
}

func addOptions(entry, words string) string {
	if words == "" {
		return entry
	}
	return regexp.MustCompile(`(?m)^options .*$`).ReplaceAllStringFunc(entry, func(l string) string { return l + " " + words })
}

// espPath drops the leading slash mtools' "::" already stands for.
func espPath(p string) string { return strings.TrimPrefix(p, "/") }

func writeESP(t *testing.T, esp, tmp, name, content string) {
	t.Helper()
	local := filepath.Join(tmp, filepath.Base(name))
	if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	runHost(t, "mcopy", "-o", "-i", esp, local, "::"+name)
}

func copyRange(t *testing.T, disk string, from, to, n int64) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.NewOffsetWriter(f, to), io.NewSectionReader(f, from, n)); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, disk string, off int64) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func consoleLog(t *testing.T, dir string) io.Writer {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "console.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func runHost(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out.String())
	}
	return out.String()
}

// assertHashDrivers checks which implementations of SHA-256 (dm-verity's
// hash) and CRC32C (ext4's metadata checksum) the kernel is using: of
// the drivers /proc/crypto lists for each, the one of highest priority
// that something holds (refcnt above the 1 its registration holds). On a
// CPU with the features, stage 1 loads the CPU's own code before
// dm-verity and ext4 take theirs; on one without, nothing is loaded that
// cannot run.
func assertHashDrivers(t *testing.T, m *vm.VM, sha256, crc32c string) {
	t.Helper()
	for alg, want := range map[string]string{"sha256": sha256, "crc32c": crc32c} {
		script := `awk -F': *' '/^name/{n=$2} /^driver/{d=$2} /^priority/{p=$2+0} /^refcnt/{if (n=="` + alg + `" && $2+0>1 && p>=bp) {bp=p; bd=d}} END{print bd}' /proc/crypto`
		if got := strings.TrimSpace(mustRun(t, m, script)); got != want {
			t.Errorf("%s in use: %q, want %q (/proc/crypto:\n%s)", alg, got, want, mustRun(t, m, "grep -A5 '^name *: "+alg+"$' /proc/crypto"))
		}
	}
}
