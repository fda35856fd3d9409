package phases

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
)

// A boot_cmd that never exits does not hold the boot phase (sshd, the
// network and the console come after it): Boot returns while it runs, it
// is killed at kestrel.command_timeout and reported, and run_cmd still
// runs after it.
func TestHangingBootCmd(t *testing.T) {
	root := fakeRoot(t)
	marks := t.TempDir()
	// boot_cmd[0] waits for the test to see Boot return: a Boot that
	// waited for it would time it out instead.
	state := `boot_cmd:
  - while [ ! -e ` + marks + `/go ]; do sleep 0.01; done
  - touch ` + marks + `/started; exec sleep 100000
run_cmd:
  - touch ` + marks + `/run_cmd
kestrel:
  command_timeout: 2s
`
	os.WriteFile(filepath.Join(root, "state", config.StateConfigFile), []byte(state), 0o644)
	r := New(Options{Root: root, ESP: filepath.Join(root, "boot/efi"), Cmdline: filepath.Join(root, "proc/cmdline"),
		Cache: t.TempDir(), Net: datasource.Env{FileRoot: root}})
	var log logBuf
	sys := &stage2.System{Logf: log.logf}
	ctx := context.Background()
	if err := r.Boot(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(marks, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.NetworkUp(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitCommands(ctx); err != nil {
		t.Fatal(err)
	}
	out := log.String()
	if !strings.Contains(out, "boot_cmd[0]: ok") {
		t.Errorf("Boot waited for boot_cmd[0]:\n%s", out)
	}
	if !strings.Contains(out, `warning: boot_cmd: boot_cmd[1] "touch `) || !strings.Contains(out, "timed out after 2s (kestrel.command_timeout)") {
		t.Errorf("the timeout is not reported as a warning:\n%s", out)
	}
	for _, f := range []string{"started", "run_cmd"} {
		if _, err := os.Stat(filepath.Join(marks, f)); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
	if i, j := strings.Index(out, "boot_cmd[1]: failed"), strings.Index(out, "run_cmd[0]: $"); i < 0 || j < i {
		t.Errorf("run_cmd did not wait for boot_cmd:\n%s", out)
	}
}
