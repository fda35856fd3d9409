package boottest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/test/vm"
)

// BenchmarkISO prints the ISO's size and its warm build time: `make iso`
// run again over the caches the first run filled (Debian packages, Go's
// build cache, the squashfs of an unchanged rootfs tree). Goal: 60 s.
// On a build machine shared with other builds the time is noisy.
func BenchmarkISO(b *testing.B) {
	needTools(b)
	out := filepath.Join(repoRoot(), "out", "bench-iso")
	args := append(makeImageArgs(b, isoVersion, out), "K3S=none")
	args[2] = "iso"
	var warm float64
	for i := 0; i < 2; i++ { // the first run fills the caches
		start := time.Now()
		if o, err := exec.Command("make", args...).CombinedOutput(); err != nil {
			b.Fatalf("make iso: %v\n%s", err, o)
		}
		warm = time.Since(start).Seconds()
	}
	st, err := os.Stat(filepath.Join(out, fmt.Sprintf("kestrel-%s-amd64.iso", isoVersion)))
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("\nISO: %.1f MiB; warm `make iso` %.1f s (goal <= 60 s; shared CPU: noisy)\n", float64(st.Size())/(1<<20), warm)
	b.ReportMetric(float64(st.Size())/(1<<20), "iso-MiB")
	b.ReportMetric(warm, "warm-build-s")
}

// BenchmarkISOInstall boots the ISO as a CD with a blank disk and times,
// in the guest, `kestrel install` onto it against dd writing the same
// bytes (the root image and the decompressed ESP and state images, read
// from the ISO) into the partitions the install made, each synced. The
// install also verifies the release and reads the root image back, which
// dd does not. The console goes to out/test-iso/logs/bench-install.console.log.
func BenchmarkISOInstall(b *testing.B) {
	_, iso := buildISO(b)
	dir := b.TempDir()
	disk := filepath.Join(b.TempDir(), "blank.img")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 4<<30)
	logs := filepath.Join(repoRoot(), "out", "test-iso", "logs")
	os.MkdirAll(logs, 0o755)
	log, err := os.Create(filepath.Join(logs, "bench-install.console.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	m, err := vm.Start(vm.Config{CDROM: iso, Disk: disk, Dir: dir, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Kill()
	if _, err := m.Expect(readyRE, bootTimeout); err != nil {
		b.Fatalf("boot: %v", err)
	}
	run := func(cmd string) string {
		out, err := m.MustRun(cmd, 10*time.Minute)
		if err != nil {
			b.Fatalf("%s: %v", cmd, err)
		}
		return out
	}
	run("dmesg -n 1; k=" + layout.ISOMount + "/kestrel")
	// Guest time from /proc/uptime: this busybox's date has no %N.
	elapsed := func(cmd string) float64 {
		out := run("s=$(cut -d' ' -f1 /proc/uptime); " + cmd + "; echo t0=$s t1=$(cut -d' ' -f1 /proc/uptime)")
		return field(b, out, `t1=([0-9.]+)`) - field(b, out, `t0=([0-9.]+)`)
	}
	install := elapsed("kestrel install --device /dev/vda --force --silent --no-reboot > /tmp/install.log 2>&1")
	run("tail -1 /tmp/install.log")
	dd := elapsed("dd if=$k/rootfs of=/dev/vda2 bs=4M conv=fsync 2>/dev/null; zcat $k/esp.img.gz | dd of=/dev/vda1 bs=4M conv=fsync 2>/dev/null; zcat $k/state.img.gz | dd of=/dev/vda4 bs=4M conv=fsync 2>/dev/null")
	out := run("echo bytes=$(( $(stat -c %s $k/rootfs) + $(zcat $k/esp.img.gz | wc -c) + $(zcat $k/state.img.gz | wc -c) ))")
	bytes := field(b, out, `bytes=(\d+)`)
	fmt.Printf("\ninstall inside the VM (%.1f MB written besides the GPT):\n", bytes/1e6)
	fmt.Printf("  kestrel install %.1f s, dd of the same bytes %.1f s: ratio %.2f (install time / dd time; TCG, shared CPU: noisy)\n",
		install, dd, install/dd)
	b.ReportMetric(install/dd, "install/dd")
}
