package esp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

func TestMount(t *testing.T) {
	part := func(name, disk string, n int, label string) blockdev.Device {
		return blockdev.Device{Name: name, DevName: name, Disk: disk, PartNum: n, PartName: label}
	}
	esp := part("vda1", "vda", 1, layout.PartESP)
	disk := []blockdev.Device{{Name: "vda", DevName: "vda"}, esp, part("vda2", "vda", 2, layout.PartRootA)}
	const (
		rw       = "/dev/vda1 on T type vfat (nosuid,nodev,noexec,noatime,dirsync,umask=0077,shortname=mixed,errors=remount-ro"
		ro       = "/dev/vda1 on T type vfat (ro,nosuid,nodev,noexec,noatime,umask=0077,shortname=mixed"
		codepage = "no such codepage"
	)
	for _, tc := range []struct {
		name    string
		devs    []blockdev.Device
		utf8    bool // nls_utf8 loaded
		o       Options
		fail    int // mount calls that fail before one succeeds
		want    []string
		wantErr string
	}{
		{"read-write with the default iocharset", disk, true, Options{}, 0, []string{rw + ")"}, ""},
		{"read-write, nls_utf8 missing: ascii at once", disk, false, Options{}, 0, []string{rw + ",iocharset=ascii)"}, ""},
		{"read-only", disk, true, Options{ReadOnly: true}, 0, []string{ro + ")"}, ""},
		{"default fails: retried with ascii", disk, true, Options{ReadOnly: true}, 1,
			[]string{ro + ")", ro + ",iocharset=ascii)"}, ""},
		{"both fail: the first error", disk, true, Options{}, 2,
			[]string{rw + ")", rw + ",iocharset=ascii)"}, codepage + " 1"},
		{"ascii fails: no retry", disk, false, Options{}, 1,
			[]string{rw + ",iocharset=ascii)"}, codepage + " 1"},
		{"device node by DEVNAME", []blockdev.Device{{Name: "mmcblk0p1", DevName: "mmc/p1", Disk: "mmcblk0", PartNum: 1, PartName: layout.PartESP}},
			false, Options{}, 0, []string{"/dev/mmc/p1 on T type vfat (nosuid,nodev,noexec,noatime,dirsync,umask=0077,shortname=mixed,errors=remount-ro,iocharset=ascii)"}, ""},
		{"no ESP", disk[:1], true, Options{}, 0, nil, "no partition named"},
		{"two ESPs", append([]blockdev.Device{part("vdb1", "vdb", 1, layout.PartESP)}, disk...), true, Options{}, 0, nil, "ambiguous"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.o.Sys, tc.o.Dev, tc.o.Target = filepath.Join(dir, "sys"), "/dev", filepath.Join(dir, "esp")
			if tc.utf8 {
				if err := os.MkdirAll(filepath.Join(tc.o.Sys, "module", "nls_utf8"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			calls := 0
			err := Mount(tc.devs, tc.o, func(source, target, fstype string, flags uintptr, data string) error {
				calls++
				m := mounts.Mount{Source: source, Target: target, FSType: fstype, Flags: flags, Data: data}
				got = append(got, strings.Replace(m.String(), tc.o.Target, "T", 1))
				if calls <= tc.fail {
					return fmt.Errorf("%s %d", codepage, calls)
				}
				return nil
			})
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("mounts:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if (err != nil) != (tc.wantErr != "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if len(got) > 0 {
				if st, err := os.Stat(tc.o.Target); err != nil {
					t.Error(err)
				} else if st.Mode().Perm() != 0o700 {
					t.Errorf("target mode %v, want 0700", st.Mode())
				}
			}
		})
	}
}

// TestMountCheck: a read-write mount runs the check on the ESP's device
// first, a read-only one never; a repair and a failed check are warnings
// and the ESP is mounted either way; after a repair the files fsck.fat
// salvaged into the ESP's root are removed, and nothing else.
func TestMountCheck(t *testing.T) {
	devs := []blockdev.Device{{Name: "vda", DevName: "vda"}, {Name: "vda1", DevName: "vda1", Disk: "vda", PartNum: 1, PartName: layout.PartESP}}
	for _, tc := range []struct {
		name      string
		readOnly  bool
		repaired  string
		err       error
		mountErr  error
		wantCheck bool
		wantWarn  []string // substrings, one per warning, in order
		wantLeft  []string // files left in the ESP's root
	}{
		{name: "clean", wantCheck: true, wantLeft: []string{"FSCK0000.REC", "config.yaml", "fsck0001.rec.txt"}},
		{name: "read-only: no check", readOnly: true, wantLeft: []string{"FSCK0000.REC", "config.yaml", "fsck0001.rec.txt"}},
		{name: "repaired", repaired: "Reclaimed 2 unused clusters", wantCheck: true,
			wantWarn: []string{"ESP /dev/vda1 was damaged (an unclean shutdown?), repaired: Reclaimed 2 unused clusters",
				"removed T/FSCK0000.REC (5 bytes), a lost cluster chain fsck.fat saved"},
			wantLeft: []string{"config.yaml", "fsck0001.rec.txt"}},
		{name: "check failed: mounted anyway", err: errors.New("errors left"), wantCheck: true,
			wantWarn: []string{"ESP /dev/vda1: check failed, mounted anyway (it turns read-only at the first FAT error): errors left"},
			wantLeft: []string{"FSCK0000.REC", "config.yaml", "fsck0001.rec.txt"}},
		{name: "repaired, mount failed: nothing removed", repaired: "Dirty bit", mountErr: errors.New("EIO"), wantCheck: true,
			wantWarn: []string{"repaired: Dirty bit"},
			wantLeft: []string{"FSCK0000.REC", "config.yaml", "fsck0001.rec.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			target := filepath.Join(dir, "esp")
			// What the mount would show: the files are put in the target
			// directory itself.
			if err := os.MkdirAll(target, 0o700); err != nil {
				t.Fatal(err)
			}
			for name, data := range map[string]string{"FSCK0000.REC": "lost!", "config.yaml": "x", "fsck0001.rec.txt": "y"} {
				if err := os.WriteFile(filepath.Join(target, name), []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var checked []string
			var warns []string
			o := Options{Sys: filepath.Join(dir, "sys"), Dev: "/dev", Target: target, ReadOnly: tc.readOnly,
				Check: func(dev string) (string, error) { checked = append(checked, dev); return tc.repaired, tc.err },
				Warn: func(format string, args ...any) {
					warns = append(warns, strings.ReplaceAll(fmt.Sprintf(format, args...), target, "T"))
				}}
			mounted := 0
			err := Mount(devs, o, func(source, target, fstype string, flags uintptr, data string) error {
				mounted++
				if len(checked) != 0 && checked[0] != "/dev/vda1" || len(checked) == 0 && tc.wantCheck {
					t.Errorf("mount before the check (checked %q)", checked)
				}
				return tc.mountErr
			})
			if err != tc.mountErr && (err == nil || tc.mountErr == nil) {
				t.Errorf("err = %v, want %v", err, tc.mountErr)
			}
			if mounted == 0 || (len(checked) == 1) != tc.wantCheck || len(checked) > 1 {
				t.Errorf("mounted %d times, checked %q; want a check: %v", mounted, checked, tc.wantCheck)
			}
			if len(warns) != len(tc.wantWarn) {
				t.Fatalf("warnings:\n%s\nwant %d", strings.Join(warns, "\n"), len(tc.wantWarn))
			}
			for i, w := range tc.wantWarn {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %d: %q, want it to contain %q", i, warns[i], w)
				}
			}
			var left []string
			entries, _ := os.ReadDir(target)
			for _, e := range entries {
				left = append(left, e.Name())
			}
			if strings.Join(left, " ") != strings.Join(tc.wantLeft, " ") {
				t.Errorf("left in the ESP: %q, want %q", left, tc.wantLeft)
			}
		})
	}
}
