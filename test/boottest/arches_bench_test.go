package boottest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/test/vm"
)

// BenchmarkTargets prints, for each arm target, the image's size (the raw
// disk compressed: zstd -19, as BenchmarkImage does for amd64, and the
// .img.xz the SD images ship as) and one first boot to the ready line:
// wall clock from qemu's start (firmware and loader included, so it
// depends on how busy the shared host is) and the guest's own times. The
// Pi models boot the kernel directly (no Pi firmware, no U-Boot).
func BenchmarkTargets(b *testing.B) {
	fmt.Printf("\n%-6s %-26s %9s %9s %8s %8s %8s %8s\n", "target", "qemu chain", "zstd MB", "xz MB", "wall s", "kernel", "stage1", "ready")
	for _, row := range []struct {
		target archTarget
		chain  string
	}{
		{targetARM64, "virt, AAVMF + systemd-boot"},
		{targetARMv7, "virt, U-Boot + boot.scr"},
		{targetRPi3, "raspi3b, direct kernel"},
		{targetRPi2, "raspi2b, direct kernel"},
	} {
		t := row.target
		img := buildTarget(b, t)
		xz := 0.0
		if st, err := os.Stat(img.Disk + ".xz"); err == nil {
			xz = mb(st.Size())
		}
		dir := filepath.Join(b.TempDir(), t.Name)
		cfg := vm.Config{Arch: t.Arch, Firmware: t.Firmware, Disk: img.Disk, DiskSize: "3G", Dir: dir}
		if t.Board != "" {
			cfg = raspiConfig(b, img, t, img.Disk, dir)
		}
		start := time.Now()
		m, err := vm.Start(cfg)
		if err != nil {
			b.Fatal(err)
		}
		line, err := m.Expect(readyRE, bootTimeout)
		wall := time.Since(start).Seconds()
		m.Kill()
		if err != nil {
			b.Fatalf("%s: boot: %v\n%s", t.Name, err, tail(m.Console(), 40))
		}
		f := vm.Fields(line[0])
		zst := mb(zstdSize(b, img.Disk))
		fmt.Printf("%-6s %-26s %9.1f %9.1f %8.1f %8s %8s %8s\n", t.Name, row.chain, zst, xz, wall, f["kernel"], f["stage1"], f["ready"])
		b.ReportMetric(zst, t.Name+"-image-MB")
		b.ReportMetric(wall, t.Name+"-ready-wall-s")
	}
}
