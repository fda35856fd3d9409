package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fullFS mounts a 256 KiB tmpfs and fills it, the way a state partition
// fills up; free removes the filler.
func fullFS(t *testing.T) (dir string, free func()) {
	t.Helper()
	dir = t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte{'x'}, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	f.Close()
	return dir, func() { os.Remove(filler) }
}

// A service whose log cannot be written (a full disk) keeps running: its
// output is drained and dropped, its status says why, and logging resumes
// by itself once space is freed.
func TestFullLogDiskDoesNotKillService(t *testing.T) {
	s := newTest(t, Config{MinBackoff: 10 * time.Millisecond, StableAfter: time.Hour})
	dir, free := fullFS(t)
	s.cfg.LogDir = dir
	marks := t.TempDir()
	// 2000 lines (more than the pipe holds) into the full disk, then a
	// mark outside it; then wait for "go" and write one more line.
	script := `i=0; while [ $i -lt 2000 ]; do echo "line $i of output that nobody can store"; i=$((i+1)); done
touch ` + marks + `/written
while [ ! -e ` + marks + `/go ]; do sleep 0.01; done
echo after the disk was freed
exec sleep 60`
	if err := s.Start(Spec{Name: "k3s", Path: "/bin/sh", Args: []string{"-c", script}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the output written", func() bool {
		_, err := os.Stat(filepath.Join(marks, "written"))
		return err == nil
	})
	st := s.Status()[0]
	if st.Restarts != 0 || st.State != Running {
		t.Fatalf("service died writing to a full disk: %+v", st)
	}
	if !strings.Contains(st.LogError, "no space left") {
		t.Errorf("LogError = %q, want the disk full", st.LogError)
	}
	free()
	if err := os.WriteFile(filepath.Join(marks, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the log to resume", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "k3s.log"))
		return strings.Contains(string(b), "after the disk was freed")
	})
	if st := s.Status()[0]; st.Restarts != 0 || st.LogError != "" {
		t.Errorf("after freeing space: %+v", st)
	}
	if err := syscall.Kill(st.PID, 0); err != nil {
		t.Errorf("service pid %d gone: %v", st.PID, err)
	}
	s.StopAll()
}
