package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/disklayout"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// testLayout needs 1+16+2×32+8+1 = 90 MiB.
var testLayout = disklayout.Layout{ESPMiB: 16, RootMiB: 32, StateMiB: 8, Options: []string{"console=ttyS0"}}

// loopDisk attaches a sparse file of size bytes as a loop device and
// returns the device and the file; it skips without root or loop devices.
func loopDisk(t *testing.T, size int64, prepare func(img string)) (dev, img string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	img = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(img)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, img
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// isoDir is a live ISO's directory as far as the checks read it: the
// disk layout. The release and images are never reached by a refusal.
func isoDir(t *testing.T) string {
	dir := t.TempDir()
	b, err := testLayout.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, filepath.Dir(layout.ISOInstall)), 0o755)
	if err := os.WriteFile(filepath.Join(dir, layout.ISOInstall), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRefusals runs the installer against real loop devices that it must
// refuse, and checks the message and that not a byte of the disk changed.
func TestRefusals(t *testing.T) {
	const big = 128 << 20
	tests := []struct {
		name    string
		size    int64
		prepare func(t *testing.T, img string)
		mount   bool // mount the disk (as the live system's would be)
		loop    bool // attach a loop device over it (as the live ISO's is)
		config  string
		force   bool
		want    []string
	}{
		{name: "too small", size: 64 << 20, want: []string{"too small", "needs at least 90.0 MiB", "ESP 16 MiB"}},
		{name: "GPT without force", size: big, prepare: func(t *testing.T, img string) { run(t, "sgdisk", "-n", "1:2048:+8M", img) },
			want: []string{"GPT partition table", "--force"}},
		{name: "filesystem without force", size: big, prepare: func(t *testing.T, img string) { run(t, "mkfs.vfat", img) },
			want: []string{"boot signature", "--force"}},
		{name: "in use", size: big, prepare: func(t *testing.T, img string) { run(t, "mkfs.ext4", "-q", "-F", img) },
			mount: true, force: true, want: []string{"in use", "is mounted on"}},
		{name: "backs a loop device", size: big, loop: true, force: true, want: []string{"in use", "backs loop device"}},
		{name: "invalid config", size: big, config: "hostname: ok\nkestrel:\n  sysctl: [1, 2]\n", force: true,
			want: []string{"refusing the config", "user.yaml:3:"}},
		{name: "unknown key", size: big, config: "hostname: ok\nhostnmae: typo\n",
			want: []string{"refusing the config", "user.yaml:2:1", "hostnmae"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prep func(string)
			if tt.prepare != nil {
				prep = func(img string) { tt.prepare(t, img) }
			}
			dev, img := loopDisk(t, tt.size, prep)
			if tt.mount {
				mnt := t.TempDir()
				if err := unix.Mount(dev, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
					t.Skipf("mount: %v", err)
				}
				t.Cleanup(func() { unix.Unmount(mnt, 0) })
			}
			if tt.loop {
				out, err := exec.Command("losetup", "-f", "--show", "-r", dev).Output()
				if err != nil {
					t.Skipf("losetup: %v", err)
				}
				l := strings.TrimSpace(string(out))
				t.Cleanup(func() { exec.Command("losetup", "-d", l).Run() })
			}
			before := fileHash(t, img)
			o := Options{Device: dev, ISO: isoDir(t), Sys: "/sys", Dev: "/dev", MountInfo: "/proc/self/mounts",
				AllowLoop: true, Force: tt.force, TmpDir: t.TempDir()}
			if tt.config != "" {
				o.Config, o.ConfigName = []byte(tt.config), "user.yaml"
			}
			err := Run(context.Background(), o)
			if err == nil {
				t.Fatal("install went ahead")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if after := fileHash(t, img); after != before {
				t.Errorf("the disk changed although the install was refused")
			}
		})
	}
}

// TestNotADisk refuses a path that is not a whole disk.
func TestNotADisk(t *testing.T) {
	o := Options{Device: "/dev/null", ISO: isoDir(t), Sys: "/sys", Dev: "/dev", MountInfo: "/proc/self/mounts"}
	err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "is not a disk to install to") {
		t.Fatalf("got %v", err)
	}
}

func TestWhileBusy(t *testing.T) {
	busy := fmt.Errorf("open /dev/vda: %w", unix.EBUSY)
	tests := []struct {
		name      string
		errs      []error // what each call returns; the last one repeats
		wantCalls int
		wantErr   error
	}{
		{"free", []error{nil}, 1, nil},
		{"busy while a fork holds it", []error{busy, busy, nil}, 3, nil},
		{"another error at once", []error{unix.EACCES}, 1, unix.EACCES},
		{"busy for good", []error{busy}, -1, unix.EBUSY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := whileBusy(300*time.Millisecond, func() error {
				calls++
				return tt.errs[min(calls, len(tt.errs))-1]
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("err %v, want %v", err, tt.wantErr)
			}
			if tt.wantCalls > 0 && calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
			if tt.wantCalls < 0 && calls < 3 {
				t.Errorf("gave up after %d calls, before the wait was over", calls)
			}
		})
	}
}
