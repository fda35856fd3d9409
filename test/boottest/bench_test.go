package boottest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

// bootRuns is how many times BenchmarkBoot boots each of the image and
// the baseline: guest time under TCG varies by a few tenths of a second
// from run to run on a shared host, so it prints the median and the range.
const bootRuns = 3

// BenchmarkBoot boots the image through UEFI (each time a first boot, on a
// fresh overlay) and reads the guest-clock times of each stage from the
// ready line, then boots the same kernel with a minimal init (the
// baseline), and prints medians, ranges, the difference and the ratio.
func BenchmarkBoot(b *testing.B) {
	img := buildImage(b)
	var kernel, s1, s2, ready, baseline []float64
	for i := range bootRuns {
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		m, err := vm.Start(vm.Config{Disk: img.Disk, DiskSize: "3G", Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		line, err := m.Expect(readyRE, bootTimeout)
		m.Kill()
		if err != nil {
			b.Fatalf("boot: %v\n%s", err, tail(m.Console(), 40))
		}
		f := vm.Fields(line[0])
		kernel = append(kernel, num(b, f["kernel"]))
		s1 = append(s1, num(b, f["stage1"]))
		s2 = append(s2, num(b, f["stage2"]))
		ready = append(ready, num(b, f["ready"]))

		// The baseline gets the image's console and verbosity words, so
		// the difference is Kestrel's stages, not how much the kernel
		// printed.
		base, err := vm.Start(vm.Config{Kernel: img.Kernel, Initrd: img.Baseline, Append: baselineCmdline(img), Dir: filepath.Join(dir, "baseline")})
		if err != nil {
			b.Fatal(err)
		}
		bl, err := base.Expect(regexp.MustCompile(`BASELINE-READY t=([0-9.]+)`), bootTimeout)
		base.Kill()
		if err != nil {
			b.Fatalf("baseline boot: %v\n%s", err, tail(base.Console(), 40))
		}
		baseline = append(baseline, num(b, bl[1]))
	}

	r, bl := median(ready), median(baseline)
	overhead := r - bl
	fmt.Printf("\nguest clock (CLOCK_BOOTTIME, seconds): median of %d boots [min-max]\n", bootRuns)
	for _, row := range []struct {
		name string
		v    []float64
	}{{"kernel -> stage 1", kernel}, {"stage 1", s1}, {"stage 2 -> ready", s2}, {"ready at", ready}, {"baseline ready at", baseline}} {
		fmt.Printf("  %-18s %6.3f  [%.3f-%.3f]\n", row.name, median(row.v), slices.Min(row.v), slices.Max(row.v))
	}
	fmt.Printf("  Kestrel overhead %.3f s (ratio ready/baseline %.2f); target <= %.1f s: ratio %.2f\n",
		overhead, r/bl, targetOverheadSec, overhead/targetOverheadSec)
	b.ReportMetric(r, "ready-s")
	b.ReportMetric(bl, "baseline-s")
	b.ReportMetric(overhead, "overhead-s")
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

func num(b *testing.B, s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		b.Fatalf("not a number in the ready line: %q", s)
	}
	return f
}
