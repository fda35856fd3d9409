package boottest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/test/vm"
)

// BenchmarkUpgrade measures, inside one VM: the rate at which `kestrel
// upgrade` writes the root image into the inactive partition, as a ratio
// to dd writing the same bytes to the same partition in the same run
// (target >= 0.9), and the wall time from starting `kestrel upgrade` (a
// bundle over HTTP) to the new slot marked good after its reboot.
func BenchmarkUpgrade(b *testing.B) {
	const v1, v2 = "0.0.1-pc", "0.0.2-pc"
	r2 := buildRelease(b, imageOpts{Name: "test-pc-v2"}, v2)
	buildRelease(b, imageOpts{Name: "test-pc-v1"}, v1)
	img := buildImageWith(b, imageOpts{Name: "test-pc-v1", Version: v1})
	dir := b.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := copyDisk(img.Disk, disk); err != nil {
		b.Fatal(err)
	}
	m, err := vm.Start(vm.Config{Disk: disk, DiskSize: "3G", Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Kill()
	if _, err := m.Expect(readyRE, bootTimeout); err != nil {
		b.Fatalf("boot: %v", err)
	}
	run := func(cmd string) string {
		out, err := m.MustRun(cmd, 5*time.Minute)
		if err != nil {
			b.Fatalf("%s: %v", cmd, err)
		}
		return out
	}
	run("dmesg -n 1")
	url := serve(b, r2.Dir)
	// dd: the same root image bytes (from the release directory) to the
	// same partition, synced, timed by the guest.
	run(fmt.Sprintf("wget -q -O /var/tmp/rootfs %s/dir/rootfs", url))
	dev := "/dev/$(basename $(grep -l '^PARTNAME=root-b$' /sys/class/block/*/uevent | head -1 | xargs dirname))"
	// Guest time from /proc/uptime: this busybox's date has no %N (the
	// arithmetic on its literal "%N" broke the command).
	out := run(fmt.Sprintf("s=$(cut -d' ' -f1 /proc/uptime); dd if=/var/tmp/rootfs of=%s bs=4M conv=fsync 2>/dev/null; echo t0=$s t1=$(cut -d' ' -f1 /proc/uptime) bytes=$(stat -c %%s /var/tmp/rootfs)", dev))
	ddSec := field(b, out, `t1=([0-9.]+)`) - field(b, out, `t0=([0-9.]+)`)
	bytes := field(b, out, `bytes=(\d+)`)
	run("rm /var/tmp/rootfs")

	start := time.Now()
	out = run(fmt.Sprintf("kestrel upgrade --no-reboot --bundle %s/%s", url, filepath.Base(r2.Bundle)))
	mbps := field(b, out, `root image ([0-9.]+) MB/s`)
	ddMBps := bytes / 1e6 / ddSec
	run("kestrel reboot")
	m.Wait(3 * time.Minute)
	m2, err := vm.Start(vm.Config{Disk: disk, DiskSize: "3G", Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer m2.Kill()
	if _, err := m2.Expect(readyRE, bootTimeout); err != nil {
		b.Fatalf("boot v2: %v", err)
	}
	if _, err := m2.MustRun("dmesg -n 1", cmdTimeout); err != nil {
		b.Fatal(err)
	}
	for {
		o, _ := m2.MustRun("kestrel status | grep 'slot b:'", cmdTimeout)
		if regexp.MustCompile(`slot b:\s+\S+ good`).MatchString(o) {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("slot b not marked good: %s", o)
		}
		time.Sleep(time.Second)
	}
	total := time.Since(start).Seconds()
	fmt.Printf("\nupgrade inside the VM (root image %.1f MB):\n", bytes/1e6)
	fmt.Printf("  kestrel upgrade write %6.1f MB/s, dd %6.1f MB/s: ratio %.2f (target >= 0.9)\n", mbps, ddMBps, mbps/ddMBps)
	fmt.Printf("  kestrel upgrade -> new slot marked good: %.1f s wall (TCG)\n", total)
	b.ReportMetric(mbps/ddMBps, "write/dd")
	b.ReportMetric(total, "upgrade-to-good-s")
}

func field(b *testing.B, out, re string) float64 {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no %s in:\n%s", re, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
