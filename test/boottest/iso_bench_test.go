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
// from the ISO) to the same disk and syncing.
func BenchmarkISOInstall(b *testing.B) {
	_, iso := buildISO(b)
	dir := b.TempDir()
	disk := filepath.Join(b.TempDir(), "blank.img")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 4<<30)
	m, err := vm.Start(vm.Config{CDROM: iso, Disk: disk, Dir: dir})
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
	run("dmesg -n 1")
	k := layout.ISOMount + "/kestrel"
	out := run(fmt.Sprintf("s=$(date +%%s%%N); (cat %s/rootfs; zcat %s/esp.img.gz %s/state.img.gz) | dd of=/dev/vda bs=4M iflag=fullblock conv=fsync 2>/dev/null; e=$(date +%%s%%N); echo dd-ns=$((e-s)) bytes=$(( $(stat -c %%s %s/rootfs) + $(zcat %s/esp.img.gz %s/state.img.gz | wc -c) ))", k, k, k, k, k, k))
	ddNs, bytes := field(b, out, `dd-ns=(\d+)`), field(b, out, `bytes=(\d+)`)
	out = run("s=$(date +%s%N); kestrel install --device /dev/vda --force --silent --no-reboot > /tmp/install.log 2>&1; e=$(date +%s%N); echo install-ns=$((e-s)); tail -1 /tmp/install.log")
	installNs := field(b, out, `install-ns=(\d+)`)
	fmt.Printf("\ninstall inside the VM (%.1f MB written besides the GPT):\n", bytes/1e6)
	fmt.Printf("  kestrel install %.1f s, dd of the same bytes %.1f s: ratio %.2f (install time / dd time; TCG, shared CPU: noisy)\n",
		installNs/1e9, ddNs/1e9, installNs/ddNs)
	b.ReportMetric(installNs/ddNs, "install/dd")
}
