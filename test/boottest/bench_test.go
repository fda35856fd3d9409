package boottest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boottime"
	"github.com/kestrel-os/kestrel/test/vm"
)

// The targets, printed next to the measurements (never asserted).
const (
	targetOverheadSec = 0.5  // stage 1 + stage 2 beyond the baseline
	targetImageMB     = 40.0 // compressed base image without k3s
	targetWarmBuildS  = 60.0
)

// BenchmarkImage prints the compressed image size with its breakdown and
// the warm build time (a second `make image` with every input cached).
func BenchmarkImage(b *testing.B) {
	img := buildImage(b)
	start := time.Now()
	cmd := exec.Command("make", makeImageArgs(b, "0.0.0-test", img.Dir)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("warm build: %v\n%s", err, out)
	}
	warm := time.Since(start).Seconds()

	whole := zstdSize(b, img.Disk)
	parts := []struct{ name, path string }{{"kernel", img.Kernel}, {"initramfs", img.Initrd}, {"rootfs", img.Rootfs}}
	fmt.Printf("\nimage %s\n", filepath.Base(img.Disk))
	for _, p := range parts {
		st, err := os.Stat(p.path)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("  %-10s %7.2f MB\n", p.name, mb(st.Size()))
		b.ReportMetric(mb(st.Size()), p.name+"-MB")
	}
	fmt.Printf("  %-10s %7.2f MB compressed (zstd -19 of the raw image); target <= %.0f MB: ratio %.2f\n",
		"whole", mb(whole), targetImageMB, mb(whole)/targetImageMB)
	fmt.Printf("  warm build %.1f s; target <= %.0f s: ratio %.2f\n", warm, targetWarmBuildS, warm/targetWarmBuildS)
	b.ReportMetric(mb(whole), "image-MB")
	b.ReportMetric(warm, "warm-build-s")
}

// bootRuns is how many rounds BenchmarkBoot runs: guest time under TCG
// varies by a few tenths of a second from run to run on a shared host, so
// it prints medians with the range.
const bootRuns = 3

// BenchmarkBoot measures Kestrel's own share of a boot. Each round, in
// this order so that a slow spell of the shared host hits every kind
// alike: a first boot of the image through UEFI on a fresh overlay, a
// reboot of it (`kestrel reboot` on the console, qemu started again on the
// same overlay: the state partition grown, host keys made), and the same
// kernel with a do-nothing init (the baseline, cmd/kestrel-baseline-init)
// twice: booted directly (-kernel), and the way Kestrel boots, from a copy
// of the disk whose slot-a initramfs is the baseline's (same firmware,
// loader, entry and command line). The image's boot entries carry
// kestrel.debug, so stage 1 and stage 2 print their step marks
// (boottime.Steps), which it prints as a table.
//
// Kestrel's share is ready minus the baseline's ready through the same
// firmware and loader (medians): what the kernel does under OVMF and the
// EFI stub that it does not under -kernel (0.2-0.4 s here) is the
// kernel's, not Kestrel's. The share against the direct boot, the figure
// before 2026-12-05, is printed too. Reboot downtime is host wall time
// from typing `kestrel reboot` to the next ready line, firmware and boot
// loader included, printed in three parts: the shutdown (until qemu
// exits: it runs with -no-reboot), power-on to ready, and of that the
// time before the kernel (qemu's start, the firmware and the loader: the
// power-on's wall time minus the ready line's guest time). Each round
// also reboots a copy of the disk with kestrel.kexec_reboot, where the
// running kernel starts the next one: that downtime, and its wall time
// before the new kernel's clock starts. Both downtimes are also given
// from the shutdown's "stopping services" line, where the workloads go
// down (a kexec reboot loads the next kernel before it).
//
// Limits: the debug marks add ~30 console lines.
func BenchmarkBoot(b *testing.B) {
	img := buildImage(b)
	work := b.TempDir()
	disk, chainDisk := benchDisks(b, img, work)
	// The same disk with kexec reboots (kestrel.kexec_reboot).
	kexecDisk := diskWithOptions(b, disk, filepath.Join(work, "kexec.img"), "kestrel.kexec_reboot")

	var first, second []bootRecord
	var baseline, chainBaseline, downtime, shutdown, powerOn, preKernel []float64
	var kexecDown, kexecPre, servicesDown, kexecServicesDown []float64
	var kexecBoots []bootRecord
	for i := range bootRuns {
		dir := filepath.Join(work, fmt.Sprint(i))
		r1, r2, rt := bootAndReboot(b, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir})
		first, second = append(first, r1), append(second, r2)
		downtime = append(downtime, rt.shutdown+rt.powerOn)
		servicesDown = append(servicesDown, rt.servicesDown)
		shutdown, powerOn = append(shutdown, rt.shutdown), append(powerOn, rt.powerOn)
		// The guest clock starts with the kernel and keeps pace with the
		// host's under TCG, so what the wall clock has beyond the ready
		// time is qemu's start, the firmware and the loader.
		preKernel = append(preKernel, rt.powerOn-r2.ready)

		// The baseline gets the image's console and verbosity words, so
		// the difference is Kestrel's stages, not how much the kernel
		// printed.
		baseline = append(baseline, baselineReady(b, vm.Config{Kernel: img.Kernel, Initrd: img.Baseline, Append: baselineCmdline(img), Dir: filepath.Join(dir, "baseline")}, "baseline boot"))
		chainBaseline = append(chainBaseline, baselineReady(b, vm.Config{Disk: chainDisk, DiskSize: "3G", Dir: filepath.Join(dir, "baseline-chain")},
			"baseline boot through the firmware and loader"))

		km, _ := benchBoot(b, vm.Config{Disk: kexecDisk, DiskSize: "3G", Dir: filepath.Join(dir, "kexec")}, "first boot (kexec_reboot)")
		t0, tStop := sendReboot(b, km, "kexec reboot")
		rk := waitBoot(b, km, len(km.Console()), "kexec reboot")
		km.Kill()
		kexecDown = append(kexecDown, time.Since(t0).Seconds())
		kexecServicesDown = append(kexecServicesDown, time.Since(tStop).Seconds())
		kexecPre = append(kexecPre, time.Since(t0).Seconds()-rk.ready)
		kexecBoots = append(kexecBoots, rk)
	}

	fmt.Printf("\nguest clock (CLOCK_BOOTTIME, seconds), TCG on a shared host: median of %d rounds [min-max]\n", bootRuns)
	share, rebootShare := printShares(first, second, chainBaseline, baseline)
	fmt.Printf("\nreboot downtime, host wall clock from `kestrel reboot` to the next ready line (firmware and loader included):\n")
	printRow("downtime", downtime)
	printRow("  from services stopping", servicesDown)
	printRow("  shutdown", shutdown)
	printRow("  power-on to ready", powerOn)
	printRow("    before the kernel", preKernel)
	fmt.Printf("\nthe same with kestrel.kexec_reboot: the next kernel started by the running one (no firmware, no loader)\n")
	printRow("downtime", kexecDown)
	printRow("  from services stopping", kexecServicesDown)
	printRow("  before the kernel", kexecPre)
	fmt.Printf("    (the shutdown, kexec_file_load and the kernel's purgatory, which hashes the loaded kernel and initramfs)\n")
	printRow("  ready at", column(kexecBoots, readyAt))
	b.ReportMetric(median(column(first, readyAt)), "ready-s")
	b.ReportMetric(median(chainBaseline), "baseline-s")
	b.ReportMetric(median(baseline), "direct-baseline-s")
	b.ReportMetric(share, "share-s")
	b.ReportMetric(rebootShare, "reboot-share-s")
	b.ReportMetric(median(downtime), "downtime-s")
	b.ReportMetric(median(shutdown), "shutdown-s")
	b.ReportMetric(median(kexecDown), "kexec-downtime-s")
}

// BenchmarkBootICount is BenchmarkBoot's first boot, reboot and baseline
// (through the firmware and loader) with a guest clock that counts
// instructions (vm.Config.ICount: 1 ns each, a 1 GHz CPU that does one
// instruction a cycle). Under plain TCG a boot's times move by tenths of
// a second with the host's load, and code that runs once (most of a
// boot) is charged for qemu translating it, which hardware does not
// have; here the same boot gives the same times to a few milliseconds,
// and each step costs what it executes. It is no model of a real CPU
// either (no caches; a hash loop and a cold branch cost the same per
// instruction), so read its figures beside the TCG ones, not instead.
func BenchmarkBootICount(b *testing.B) {
	if accel := os.Getenv("ACCEL"); accel != "" && accel != "tcg" {
		b.Skipf("instruction counting needs TCG (ACCEL=%s)", accel)
	}
	img := buildImage(b)
	work := b.TempDir()
	disk, chainDisk := benchDisks(b, img, work)
	var first, second []bootRecord
	var chainBaseline []float64
	for i := range bootRuns {
		dir := filepath.Join(work, fmt.Sprint(i))
		r1, r2, _ := bootAndReboot(b, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir, ICount: true})
		first, second = append(first, r1), append(second, r2)
		chainBaseline = append(chainBaseline, baselineReady(b, vm.Config{Disk: chainDisk, DiskSize: "3G", Dir: filepath.Join(dir, "baseline-chain"), ICount: true},
			"baseline boot through the firmware and loader"))
	}
	fmt.Printf("\nguest clock counting instructions (qemu -icount shift=0: 1 ns each), seconds: median of %d rounds [min-max]\n", bootRuns)
	share, rebootShare := printShares(first, second, chainBaseline, nil)
	b.ReportMetric(median(column(first, readyAt)), "ready-s")
	b.ReportMetric(median(chainBaseline), "baseline-s")
	b.ReportMetric(share, "share-s")
	b.ReportMetric(rebootShare, "reboot-share-s")
}

// benchDisks makes the bench's two disks in work from the image: the
// image with kestrel.debug on its boot entries, and a copy of that whose
// slot-a initramfs is the baseline's, so the baseline boots the way
// Kestrel does (the same firmware, loader, entry and command line).
func benchDisks(b *testing.B, img *Image, work string) (disk, chainDisk string) {
	b.Helper()
	disk = diskWithOptions(b, img.Disk, filepath.Join(work, "debug.img"), layout.CmdlineDebug)
	chainDisk = filepath.Join(work, "baseline.img")
	if err := copyDisk(disk, chainDisk); err != nil {
		b.Fatal(err)
	}
	blInitrd, err := os.ReadFile(img.Baseline)
	if err != nil {
		b.Fatal(err)
	}
	writeESPFile(b, chainDisk, bls.InitrdPath(layout.Slots[0]), blInitrd)
	return disk, chainDisk
}

// rebootTimes are a reboot's host wall times, in seconds: from typing
// `kestrel reboot` until qemu exits (it runs with -no-reboot), from the
// shutdown's "stopping services" line to the next ready line, and from
// starting qemu again to that line.
type rebootTimes struct {
	shutdown, servicesDown, powerOn float64
}

// bootAndReboot boots cfg's disk on a fresh overlay, reboots it with
// `kestrel reboot` (qemu started again on the same overlay: the state
// partition grown, host keys made) and returns both boots' records.
func bootAndReboot(b *testing.B, cfg vm.Config) (first, second bootRecord, rt rebootTimes) {
	b.Helper()
	m, first := benchBoot(b, cfg, "first boot")
	t0, tStop := sendReboot(b, m, "reboot")
	if _, err := m.Wait(3 * time.Minute); err != nil { // -no-reboot: qemu exits on the reboot
		b.Fatalf("reboot: %v\n%s", err, tail(m.Console(), 30))
	}
	rt.shutdown = time.Since(t0).Seconds()
	t1 := time.Now()
	m2, second := benchBoot(b, cfg, "reboot")
	rt.powerOn = time.Since(t1).Seconds()
	rt.servicesDown = time.Since(tStop).Seconds()
	m2.Kill()
	return first, second, rt
}

// sendReboot types `kestrel reboot` on m's console (the kernel's console
// messages quieted first) and waits for the shutdown's "stopping
// services" line; it returns when it typed the command and when the line
// came.
func sendReboot(b *testing.B, m *vm.VM, what string) (typed, stopping time.Time) {
	b.Helper()
	if _, err := m.MustRun("dmesg -n 1", cmdTimeout); err != nil {
		b.Fatalf("%s: console shell: %v\n%s", what, err, tail(m.Console(), 40))
	}
	typed = time.Now()
	m.Send("kestrel reboot\n")
	if _, err := m.Expect(stoppingRE, cmdTimeout); err != nil {
		b.Fatalf("%s: %v\n%s", what, err, tail(m.Console(), 30))
	}
	return typed, time.Now()
}

// baselineReady boots the do-nothing init and returns its ready time.
func baselineReady(b *testing.B, cfg vm.Config, what string) float64 {
	b.Helper()
	m, err := vm.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	bl, err := m.Expect(regexp.MustCompile(`BASELINE-READY t=([0-9.]+)`), bootTimeout)
	m.Kill()
	if err != nil {
		b.Fatalf("%s: %v\n%s", what, err, tail(m.Console(), 40))
	}
	return num(b, bl[1])
}

// printShares prints the step marks of the first boots and the reboots
// as tables, with Kestrel's share of each: ready minus the baseline's
// ready through the same firmware and loader (medians), and, when direct
// is given, against the baseline booted directly. It returns the two
// shares.
func printShares(first, second []bootRecord, chainBaseline, direct []float64) (share, rebootShare float64) {
	bl := median(chainBaseline)
	var shares []float64
	for _, boot := range []struct {
		name string
		recs []bootRecord
	}{{"first boot", first}, {"reboot (second boot on the same disk)", second}} {
		fmt.Printf("\n%s: step marks (kestrel.debug), time of the mark and the step's length\n", boot.name)
		printSteps(boot.recs)
		kernel, ready := column(boot.recs, func(r bootRecord) float64 { return r.kernel }), column(boot.recs, readyAt)
		printRow("kernel -> stage 1", kernel)
		printRow("stage 1", column(boot.recs, func(r bootRecord) float64 { return r.stage1 }))
		printRow("stage 2 -> ready", column(boot.recs, func(r bootRecord) float64 { return r.stage2 }))
		printRow("ready at", ready)
		printRow("baseline ready at", chainBaseline)
		if direct != nil {
			printRow("  direct boot", direct)
		}
		share := median(ready) - bl
		shares = append(shares, share)
		fmt.Printf("  Kestrel's share %.3f s (ready minus baseline; of it, before stage 1 %.3f s); target <= %.1f s: ratio %.2f\n",
			share, median(kernel)-bl, targetOverheadSec, share/targetOverheadSec)
		if direct != nil {
			fmt.Printf("  against the baseline booted directly (-kernel, no firmware or disk; the figure before 2026-12-05): %.3f s, ratio %.2f\n",
				median(ready)-median(direct), (median(ready)-median(direct))/targetOverheadSec)
		}
	}
	return shares[0], shares[1]
}

// bootRecord is what one boot printed: the ready line's times and the
// step marks.
type bootRecord struct {
	kernel, stage1, stage2, ready float64
	steps                         []step
}

func readyAt(r bootRecord) float64 { return r.ready }

// column is one field of every record.
func column(recs []bootRecord, f func(bootRecord) float64) []float64 {
	var v []float64
	for _, r := range recs {
		v = append(v, f(r))
	}
	return v
}

// stoppingRE is the shutdown's first line after any kexec load
// (power.Shutdown): services, and the workloads with them, go down from
// here.
var stoppingRE = regexp.MustCompile(`reboot: stopping services`)

// benchBoot starts a machine and waits for its ready line.
func benchBoot(b *testing.B, cfg vm.Config, what string) (*vm.VM, bootRecord) {
	b.Helper()
	m, err := vm.Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return m, waitBoot(b, m, 0, what)
}

// waitBoot waits for the next ready line on m and returns that boot's
// record, its step marks read from the console after from (a reboot that
// did not end qemu, kexec, follows the last boot on the same console).
func waitBoot(b *testing.B, m *vm.VM, from int, what string) bootRecord {
	b.Helper()
	line, err := m.Expect(readyRE, bootTimeout)
	if err != nil {
		m.Kill()
		b.Fatalf("%s: %v\n%s", what, err, tail(m.Console(), 40))
	}
	f := vm.Fields(line[0])
	r := bootRecord{kernel: num(b, f["kernel"]), stage1: num(b, f["stage1"]), stage2: num(b, f["stage2"]), ready: num(b, f["ready"]),
		steps: parseSteps(m.Console()[from:])}
	if len(r.steps) == 0 {
		m.Kill()
		b.Fatalf("%s: no step marks on the console (is %s on the command line?)\n%s", what, layout.CmdlineDebug, tail(m.Console(), 40))
	}
	return r
}

// step is one kestrel.debug step mark: the step that ended at At (guest
// seconds) and took Took.
type step struct {
	Name     string
	At, Took float64
}

// stepRE matches boottime.Steps.Mark's "kestrel: %-16s %6.3fs (+%.3fs)".
var stepRE = regexp.MustCompile(`(?m)^kestrel: (\S.*?) +(\d+\.\d{3})s \(\+(-?\d+\.\d{3})s\)$`)

// parseSteps returns the step marks of one boot's console, in order.
func parseSteps(console string) []step {
	var out []step
	for _, m := range stepRE.FindAllStringSubmatch(console, -1) {
		at, _ := strconv.ParseFloat(m[2], 64)
		took, _ := strconv.ParseFloat(m[3], 64)
		out = append(out, step{Name: m[1], At: at, Took: took})
	}
	return out
}

// printSteps prints one row per step name (in the order of the first
// boot that has it): the median time of the mark, the median length of the
// step and its range.
func printSteps(recs []bootRecord) {
	var names []string
	at, took := map[string][]float64{}, map[string][]float64{}
	for _, r := range recs {
		for _, s := range r.steps {
			if _, ok := at[s.Name]; !ok {
				names = append(names, s.Name)
			}
			at[s.Name] = append(at[s.Name], s.At)
			took[s.Name] = append(took[s.Name], s.Took)
		}
	}
	fmt.Printf("  %-18s %7s  %7s  %s\n", "step", "at", "took", "[min-max took]")
	for _, n := range names {
		fmt.Printf("  %-18s %7.3f  %7.3f  [%.3f-%.3f]\n", n, median(at[n]), median(took[n]), slices.Min(took[n]), slices.Max(took[n]))
	}
}

func printRow(name string, v []float64) {
	fmt.Printf("  %-18s %7.3f  [%.3f-%.3f]\n", name, median(v), slices.Min(v), slices.Max(v))
}

// editESPEntries rewrites every boot entry on the ESP of disk (a copy of
// an image) with edit.
func editESPEntries(b testing.TB, disk string, edit func(entry string) string) {
	b.Helper()
	fs, closeDisk := openESP(b, disk)
	defer closeDisk()
	entries, err := fs.ReadDir(strings.TrimPrefix(layout.ESPEntriesDir, "/")) // an io/fs path: no leading slash
	if err != nil {
		b.Fatalf("ESP of %s: %s: %v", disk, layout.ESPEntriesDir, err)
	}
	edited := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		name := path.Join(layout.ESPEntriesDir, e.Name())
		f, err := fs.OpenFile(name, os.O_RDONLY)
		if err != nil {
			b.Fatalf("ESP %s: %v", name, err)
		}
		old, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			b.Fatalf("ESP %s: %v", name, err)
		}
		if f, err = fs.OpenFile(name, os.O_RDWR|os.O_TRUNC); err != nil {
			b.Fatalf("ESP %s: %v", name, err)
		}
		if _, err := f.Write([]byte(edit(string(old)))); err != nil {
			b.Fatalf("ESP %s: %v", name, err)
		}
		if err := f.Close(); err != nil {
			b.Fatalf("ESP %s: %v", name, err)
		}
		edited++
	}
	if edited == 0 {
		b.Fatalf("ESP of %s: no boot entries in %s", disk, layout.ESPEntriesDir)
	}
}

// median of a non-empty list.
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// baselineCmdline keeps the console= and quiet words of the image's own
// command line (from the builder's manifest).
func baselineCmdline(img *Image) string {
	cmdline, _ := img.Manifest["cmdline"].(string)
	var words []string
	for _, w := range strings.Fields(cmdline) {
		if strings.HasPrefix(w, "console=") || w == "quiet" || strings.HasPrefix(w, "loglevel=") {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}

func zstdSize(b *testing.B, path string) int64 {
	out := filepath.Join(b.TempDir(), "img.zst")
	if msg, err := exec.Command("zstd", "-q", "-T0", "-19", "-o", out, path).CombinedOutput(); err != nil {
		b.Fatalf("zstd %s: %v: %s", path, err, msg)
	}
	st, err := os.Stat(out)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func num(b testing.TB, s string) float64 {
	b.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		b.Fatalf("not a number in the ready line: %q", s)
	}
	return f
}

// TestParseSteps reads step marks as boottime.Steps prints them (through
// the "kestrel: " prefix stage 1 and stage 2 give them), among other
// console lines.
func TestParseSteps(t *testing.T) {
	var console strings.Builder
	now := 2 * time.Second
	logf := func(f string, a ...any) { fmt.Fprintf(&console, "kestrel: "+f+"\n", a...) }
	mark := boottime.NewSteps(func() time.Duration { return now }, now, true, logf).Mark
	mark("stage 1 start")
	now += 250 * time.Millisecond
	mark("hostname, lo")
	console.WriteString("kestrel: root vda3 opened through dm-verity (1.000s)\n[    3.1] virtio_net\n")
	now += 1500 * time.Millisecond
	mark("a step with a name longer than sixteen")
	want := []step{{"stage 1 start", 2, 0}, {"hostname, lo", 2.25, 0.25}, {"a step with a name longer than sixteen", 3.75, 1.5}}
	if got := parseSteps(console.String()); !slices.Equal(got, want) {
		t.Errorf("parseSteps(%q) = %v, want %v", console.String(), got, want)
	}
}
