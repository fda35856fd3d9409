package esp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// CheckTimeout bounds each fsck.fat run. A clean 256 MiB ESP takes well
// under a second even under qemu's emulation; a check that takes longer
// is killed and the ESP mounted as it is.
const CheckTimeout = 2 * time.Minute

// maxReportLines caps how much of fsck.fat's report goes into a warning
// (`kestrel status` shows every warning whole).
const maxReportLines = 12

// FsckFAT returns a Checker that runs Debian's fsck.fat at bin:
// `fsck.fat -a -w dev` repairs without asking, choosing the least
// destructive fix each time, and writes each fix as it goes rather than
// all at the end (a cut during the check keeps the fixes made so far).
//
// fsck.fat exits 1 both when it changed something and when it gave up
// (an unreadable device, a boot sector it cannot make sense of), so a
// non-zero exit is followed by `fsck.fat -n dev`, which writes nothing: if
// that finds the filesystem clean, the first run repaired it and its
// report is returned; if not, the error carries what is left.
//
// An image without fsck.fat (a build without dosfstools pinned) makes
// every check an error saying so.
func FsckFAT(bin string) Checker {
	return func(dev string) (string, error) {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("not checked: %w", err)
		}
		out, err := runFsck(bin, "-a", "-w", dev)
		if err == nil {
			return "", nil
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return "", fmt.Errorf("fsck.fat -a -w %s: %w", dev, err)
		}
		report := summarize(out)
		left, err := runFsck(bin, "-n", dev)
		if err != nil {
			return report, fmt.Errorf("fsck.fat -a -w %s: errors left (fsck.fat -n: %v): %s", dev, err, summarize(left))
		}
		return report, nil
	}
}

// runFsck runs fsck.fat with args under CheckTimeout and returns its
// output, stdout and stderr together.
func runFsck(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("killed after %v", CheckTimeout)
	}
	return string(out), err
}

// summarize makes fsck.fat's output one line: what it found and did,
// without its version banner and without the notes it prints when glibc's
// iconv modules are missing (the rootfs ships none; fsck.fat then uses
// its built-in code page 850 table).
func summarize(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", strings.HasPrefix(l, "fsck.fat "),
			strings.HasPrefix(l, "Cannot initialize conversion "),
			l == "Using internal CP850 conversion table":
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) > maxReportLines {
		more := len(lines) - maxReportLines
		lines = append(lines[:maxReportLines], fmt.Sprintf("... (%d more lines)", more))
	}
	return strings.Join(lines, " / ")
}
