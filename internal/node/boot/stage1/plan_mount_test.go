package stage1

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

// TestPersistentDirsNosuidNodev runs the plan's persistent-directory steps
// with real mounts (a tmpfs stands in for the state ext4, mounted without
// nosuid or nodev so the binds must get them themselves) and checks the
// kernel's view: /var and /home are nosuid,nodev, a setuid-root binary on
// them runs without root's euid, a device node on them does not open, and
// a plain executable still runs (k3s runs its binaries from /var).
func TestPersistentDirsNosuidNodev(t *testing.T) {
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755) // the unprivileged user below must reach the files
	os.Chmod(filepath.Dir(tmp), 0o755)
	nr := filepath.Join(tmp, "newroot")
	state := filepath.Join(nr, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", state, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("needs to mount (root): %v", err)
	}
	var done []string
	t.Cleanup(func() {
		for i := len(done) - 1; i >= 0; i-- {
			syscall.Unmount(done[i], syscall.MNT_DETACH)
		}
		syscall.Unmount(state, syscall.MNT_DETACH)
	})
	var steps []Step
	for _, s := range Plan(PlanInput{NewRoot: nr, RootDev: "r", StateDev: "s", StateMount: "/state",
		PersistentDirs: []string{"var", "home"}, EtcStage: "/e"}) {
		if strings.HasPrefix(s.Path, state+"/") || strings.HasPrefix(s.Mount.Source, state+"/") {
			steps = append(steps, s)
		}
	}
	err := Execute(steps, Ops{
		Mount: func(src, tgt, fstype string, flags uintptr, data string) error {
			err := syscall.Mount(src, tgt, fstype, flags, data)
			if err == nil && flags&syscall.MS_REMOUNT == 0 {
				done = append(done, tgt)
			}
			return err
		},
		Mkdir: func(p string, m uint32) error { return os.MkdirAll(p, os.FileMode(m)) },
		Logf:  t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	infos, err := mounts.ReadMountinfo("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"var", "home"} {
		var opts string
		for _, i := range infos {
			if i.Target == filepath.Join(nr, d) {
				opts = i.Options
			}
		}
		if !strings.Contains(","+opts+",", ",nosuid,") || !strings.Contains(","+opts+",", ",nodev,") {
			t.Errorf("/%s mounted %q, want nosuid,nodev", d, opts)
		}
	}

	id := filepath.Join(nr, "var/id")
	data, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Skip("no /usr/bin/id to test setuid with")
	}
	os.WriteFile(id, data, 0o755)
	if err := os.Chmod(id, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running a binary from /var: %v %s", err, out)
	}
	if strings.Contains(string(out), "euid=0") {
		t.Errorf("a setuid-root binary on /var gave root: %s", out)
	}
	null := filepath.Join(nr, "home/null")
	if err := syscall.Mknod(null, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	if f, err := os.OpenFile(null, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Error("a device node on /home opened")
	}
}
