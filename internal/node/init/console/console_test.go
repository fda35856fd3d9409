package console

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDevice(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(sys, "class", "tty", "console"), 0o755)
	os.WriteFile(filepath.Join(dev, "ttyS0"), nil, 0o644)
	for _, tc := range []struct{ active, want string }{
		{"ttyS0\n", filepath.Join(dev, "ttyS0")},
		{"tty0 ttyS0\n", filepath.Join(dev, "ttyS0")},
		{"ttyAMA0\n", "/dev/console"}, // no such node here
		{"", "/dev/console"},
	} {
		os.WriteFile(filepath.Join(sys, "class", "tty", "console", "active"), []byte(tc.active), 0o644)
		if got := Device(sys, dev, "/dev/console"); got != tc.want {
			t.Errorf("active %q: Device = %q, want %q", tc.active, got, tc.want)
		}
	}
	if got := Device(t.TempDir(), dev, "/dev/console"); got != "/dev/console" {
		t.Errorf("no sysfs: %q", got)
	}
}

func TestShellCommand(t *testing.T) {
	cmd, f, err := ShellCommand("/dev/null", "/bin/sh", []string{"-l"}, Env(""))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !cmd.SysProcAttr.Setsid || !cmd.SysProcAttr.Setctty || cmd.Stdin != f {
		t.Errorf("command not set up as a session leader on the tty: %+v", cmd.SysProcAttr)
	}
	if _, _, err := ShellCommand(filepath.Join(t.TempDir(), "nope"), "/bin/sh", nil, nil); err == nil {
		t.Error("missing tty accepted")
	}
}
