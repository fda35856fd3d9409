package esp

import (
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
		rw       = "/dev/vda1 on T type vfat (nosuid,nodev,noexec,noatime,umask=0077,shortname=mixed,errors=remount-ro"
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
			false, Options{}, 0, []string{"/dev/mmc/p1 on T type vfat (nosuid,nodev,noexec,noatime,umask=0077,shortname=mixed,errors=remount-ro,iocharset=ascii)"}, ""},
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
