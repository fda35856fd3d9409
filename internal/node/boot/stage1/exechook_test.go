package stage1

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecHook runs a real program from a new root: the arguments it
// gets, its output on the console, and a failing exit as the error.
func TestExecHook(t *testing.T) {
	for _, tc := range []struct {
		name     string
		esp      string
		exit     int
		wantArgs string
		wantErr  string
	}{
		{name: "with the ESP", esp: "/.esp", wantArgs: "initramfs-phase -new-root NEWROOT -esp /.esp"},
		{name: "no ESP", wantArgs: "initramfs-phase -new-root NEWROOT"},
		{name: "fails", exit: 3, wantArgs: "initramfs-phase -new-root NEWROOT", wantErr: "exit status 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			bin := filepath.Join(root, "usr/bin/kestrel")
			if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
				t.Fatal(err)
			}
			script := "#!/bin/sh\necho \"kestrel: phase ran with $*\"\nexit " + string(rune('0'+tc.exit)) + "\n"
			if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := ExecHook(&out, "/usr/bin/kestrel", "initramfs-phase")(HookEnv{NewRoot: root, ESP: tc.esp})
			want := "kestrel: phase ran with " + strings.ReplaceAll(tc.wantArgs, "NEWROOT", root) + "\n"
			if out.String() != want {
				t.Errorf("console %q, want %q", out.String(), want)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), bin)):
				t.Errorf("error %v, want one naming %s and %q", err, bin, tc.wantErr)
			}
		})
	}
}
