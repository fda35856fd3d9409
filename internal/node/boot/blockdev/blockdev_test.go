package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeDisk creates a sysfs tree like the kernel's: the device directory
// under devices/, a symlink in class/block.
func fakeDisk(t *testing.T, sys, disk string, major int, sizeSectors int64, parts []string) {
	t.Helper()
	diskDir := filepath.Join(sys, "devices", "pci0000:00", "virtio1", "block", disk)
	write := func(dir, uevent string, size int64) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "uevent"), []byte(uevent), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "size"), []byte(fmt.Sprintf("%d\n", size)), 0o644); err != nil {
			t.Fatal(err)
		}
		cls := filepath.Join(sys, "class", "block")
		os.MkdirAll(cls, 0o755)
		rel, _ := filepath.Rel(cls, dir)
		if err := os.Symlink(rel, filepath.Join(cls, filepath.Base(dir))); err != nil {
			t.Fatal(err)
		}
	}
	write(diskDir, fmt.Sprintf("MAJOR=%d\nMINOR=0\nDEVNAME=%s\nDEVTYPE=disk\nDISKSEQ=9\n", major, disk), sizeSectors)
	for i, p := range parts {
		name := fmt.Sprintf("%s%d", disk, i+1)
		ue := fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nDISKSEQ=9\nPARTN=%d\n", major, i+1, name, i+1)
		if p != "" {
			ue += "PARTNAME=" + p + "\n"
		}
		write(filepath.Join(diskDir, name), ue, 2048*int64(i+1))
	}
}

func TestByPartName(t *testing.T) {
	sys := t.TempDir()
	fakeDisk(t, sys, "vda", 254, 4194304, []string{"esp", "root-a", "root-b", "state"})
	fakeDisk(t, sys, "sr0", 11, 100, nil)
	devs, err := List(sys)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 6 {
		t.Fatalf("List found %d devices, want 6: %+v", len(devs), devs)
	}
	for _, tc := range []struct {
		name    string
		want    string
		wantErr bool
	}{
		{"root-a", "vda2", false},
		{"state", "vda4", false},
		{"esp", "vda1", false},
		{"root-c", "", true},
		{"", "", true}, // the disk has no name and must not match ""
	} {
		d, err := ByPartName(devs, tc.name)
		if (err != nil) != tc.wantErr {
			t.Errorf("ByPartName(%q) error = %v, wantErr %v", tc.name, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			if tc.name != "" && !errors.Is(err, ErrNotFound) {
				t.Errorf("ByPartName(%q) error %v is not ErrNotFound", tc.name, err)
			}
			continue
		}
		if d.Name != tc.want || d.Disk != "vda" || d.Path("/dev") != "/dev/"+tc.want {
			t.Errorf("ByPartName(%q) = %+v, want %s on vda", tc.name, d, tc.want)
		}
	}
	st, _ := ByPartName(devs, "state")
	if st.PartNum != 4 || st.Size != 4*2048*512 || st.Major != 254 || st.Minor != 4 {
		t.Errorf("state = %+v", st)
	}
	disk, ok := ByName(devs, "vda")
	if !ok || disk.IsPartition() || disk.Size != 4194304*512 {
		t.Errorf("disk = %+v, %v", disk, ok)
	}
}

func TestAmbiguous(t *testing.T) {
	sys := t.TempDir()
	fakeDisk(t, sys, "vda", 254, 1000, []string{"esp", "root-a"})
	fakeDisk(t, sys, "sda", 8, 1000, []string{"esp", "root-a"})
	devs, err := List(sys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ByPartName(devs, "root-a"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("two root-a partitions: err = %v", err)
	}
}

func TestWaitAndDescribe(t *testing.T) {
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class", "block"), 0o755)
	go func() {
		time.Sleep(30 * time.Millisecond)
		fakeDisk(t, sys, "vda", 254, 4194304, []string{"esp", "root-a", "", "state"})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ticks := 0
	devs, err := Wait(ctx, sys, []string{"root-a", "state"}, 5*time.Millisecond, func() { ticks++ })
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if ticks == 0 {
		t.Error("tick never ran")
	}
	desc := Describe(devs)
	for _, want := range []string{"vda2", "root-a", "(none)", "(disk)", "2.0 GiB"} {
		if !strings.Contains(desc, want) {
			t.Errorf("Describe lacks %q:\n%s", want, desc)
		}
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	devs, err = Wait(ctx2, sys, []string{"root-b"}, 5*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), `"root-b"`) || len(devs) != 5 {
		t.Errorf("Wait for a missing name: devs %d, err %v", len(devs), err)
	}
	if !strings.Contains(Describe(nil), "no block devices") {
		t.Error("Describe(nil) gives no hint")
	}
}
