package stage1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// e2fsckPaths are where the initramfs may carry e2fsck.
var e2fsckPaths = []string{"/sbin/e2fsck", "/usr/sbin/e2fsck", "/bin/e2fsck"}

// checkTimeout bounds the boot-time check: -p on a clean journal takes
// well under a second; a long repair is a job for an operator, and the
// state is mounted errors=remount-ro anyway.
const checkTimeout = 5 * time.Minute

// CheckExt4 runs `e2fsck -p dev` with the first e2fsck found under root
// (found is false when there is none). e2fsck's exit status is a bit
// mask: 1 (errors corrected) and 2 (corrected, reboot advised: not for
// a filesystem that is not mounted yet) are success; 4 and above mean
// errors left, an operational error or a cancelled check, reported with
// the tool's last lines.
func CheckExt4(root, dev string) (found bool, err error) {
	var bin string
	for _, p := range e2fsckPaths {
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && st.Mode().IsRegular() {
			bin = filepath.Join(root, p)
			break
		}
	}
	if bin == "" {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-p", dev).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() > 0 && exit.ExitCode() < 4 {
		return true, nil
	}
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) > 3 {
			lines = lines[len(lines)-3:]
		}
		return true, fmt.Errorf("e2fsck -p %s: %v: %s", dev, err, strings.Join(lines, " / "))
	}
	return true, nil
}
