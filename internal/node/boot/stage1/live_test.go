package stage1

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// TestLivePlan: the live plan is the disk plan with state on a tmpfs,
// nothing checked or grown, no random seed, every other step the same.
func TestLivePlan(t *testing.T) {
	in := PlanInput{NewRoot: "/newroot", RootDev: "/dev/dm-0", StateMount: layout.StateMount, PersistentDirs: layout.PersistentDirs,
		EtcStage: "/.etc", Proc: "/proc", Sys: "/sys", Dev: "/dev"}
	live := LivePlan(in)
	var got []string
	for _, s := range live {
		got = append(got, s.String())
		if s.Op == OpCheck || s.Op == OpResize || s.Op == OpSeed {
			t.Errorf("live plan has %s", s)
		}
	}
	state := "mount tmpfs on /newroot/state"
	if !strings.Contains(strings.Join(got, "\n"), state) {
		t.Errorf("no tmpfs state in:\n%s", strings.Join(got, "\n"))
	}
	disk := Plan(PlanInput{NewRoot: in.NewRoot, RootDev: in.RootDev, StateDev: "/dev/vda4", StateMount: in.StateMount,
		PersistentDirs: in.PersistentDirs, EtcStage: in.EtcStage, Proc: in.Proc, Sys: in.Sys, Dev: in.Dev})
	if len(disk) != len(live)+1 { // the disk plan's e2fsck step
		t.Errorf("disk plan %d steps, live %d: only the check should differ", len(disk), len(live))
	}
	if live[0].String() != disk[0].String() {
		t.Errorf("root mount differs: %s vs %s", live[0], disk[0])
	}
}

// TestVolumeIDAndLoop reads the volume identifier of an ISO made by
// xorriso, refuses a file that is not one, and attaches the ISO
// read-only through a loop device as stage 1 does.
func TestVolumeIDAndLoop(t *testing.T) {
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso not installed")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	iso := filepath.Join(t.TempDir(), "t.iso")
	if o, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", layout.ISOVolumeID, "-o", iso, dir).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, o)
	}
	if v, err := VolumeID(iso); err != nil || v != layout.ISOVolumeID {
		t.Fatalf("VolumeID = %q, %v", v, err)
	}
	if _, err := VolumeID(filepath.Join(dir, "f")); err == nil {
		t.Error("a one-byte file read as an ISO")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	dev, err := AttachLoop("/dev", iso)
	if err != nil {
		t.Skipf("loop: %v", err)
	}
	defer exec.Command("losetup", "-d", dev).Run()
	if v, err := VolumeID(dev); err != nil || v != layout.ISOVolumeID {
		t.Errorf("through %s: VolumeID = %q, %v", dev, v, err)
	}
	ro, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "ro"))
	if err != nil || strings.TrimSpace(string(ro)) != "1" {
		t.Errorf("%s not read-only: %q %v", dev, ro, err)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write([]byte("x"))
		f.Close()
	}
	if err == nil {
		t.Errorf("wrote to the read-only loop device")
	}
}
