package stage1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
)

func TestRunHooks(t *testing.T) {
	esp := blockdev.Device{Name: "vda1", DevName: "vda1", Disk: "vda", PartNum: 1, PartName: layout.PartESP}
	for _, tc := range []struct {
		name      string
		devs      []blockdev.Device
		mountErrs int // mounts that fail before one succeeds
		wantESP   bool
		wantMount []string
		wantLog   string
		utf8      bool // nls_utf8 loaded
		idle      bool // no config for the phase: the hook does not run
	}{
		{"ESP mounted read-only for the hook", []blockdev.Device{esp}, 0, true,
			[]string{"/dev/vda1 vfat ro umask=0077,shortname=mixed"}, "", true, false},
		{"nls_utf8 not loaded: iocharset=ascii at once", []blockdev.Device{esp}, 0, true,
			[]string{"/dev/vda1 vfat ro umask=0077,shortname=mixed,iocharset=ascii"}, "", false, false},
		{"retry with iocharset=ascii", []blockdev.Device{esp}, 1, true,
			[]string{"/dev/vda1 vfat ro umask=0077,shortname=mixed", "/dev/vda1 vfat ro umask=0077,shortname=mixed,iocharset=ascii"}, "", true, false},
		{"ESP that does not mount: hook runs without it", []blockdev.Device{esp}, 2, false,
			[]string{"/dev/vda1 vfat ro umask=0077,shortname=mixed", "/dev/vda1 vfat ro umask=0077,shortname=mixed,iocharset=ascii"}, "warning: ESP:", true, false},
		{"no ESP partition", nil, 0, false, nil, "warning: ESP:", true, false},
		{"nothing for the phase: hook not run", []blockdev.Device{esp}, 0, true,
			[]string{"/dev/vda1 vfat ro umask=0077,shortname=mixed"}, "initramfs phase not run: no config source has", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			newRoot := filepath.Join(root, "newroot") // with its /sys
			if tc.utf8 {
				if err := os.MkdirAll(filepath.Join(newRoot, "sys", "module", "nls_utf8"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Join(newRoot, "sys", "class", "block"), 0o755); err != nil {
				t.Fatal(err)
			}
			if !tc.idle {
				writeFile(t, filepath.Join(newRoot, layout.ConfigDefaults), "init_cmd: [true]\n")
			}
			var mounts, unmounts []string
			fails := tc.mountErrs
			env := Env{
				Root: root, NewRoot: newRoot,
				Mount: func(source, target, fstype string, flags uintptr, data string) error {
					ro := ""
					if flags&syscall.MS_RDONLY != 0 {
						ro = "ro"
					}
					mounts = append(mounts, strings.Join([]string{strings.TrimPrefix(source, newRoot), fstype, ro, data}, " "))
					if fails > 0 {
						fails--
						return errors.New("no such codepage")
					}
					return nil
				},
				Unmount: func(target string, flags int) error { unmounts = append(unmounts, target); return nil },
			}
			var got HookEnv
			called := false
			env.Hooks.Initramfs = func(h HookEnv) error { got, called = h, true; return errors.New("hook failed") }
			var log strings.Builder
			logf := func(f string, a ...any) { log.WriteString(fmt.Sprintf(f, a...) + "\n") }
			runHooks(env, tc.devs, "vda", logf, logf)
			if tc.idle && called {
				t.Errorf("hook called with nothing to do: %+v", got)
			}
			if !tc.idle && (!called || got.NewRoot != newRoot) {
				t.Fatalf("hook called %v with %+v", called, got)
			}
			if strings.Join(mounts, "\n") != strings.Join(tc.wantMount, "\n") {
				t.Errorf("mounts:\n%s\nwant\n%s", strings.Join(mounts, "\n"), strings.Join(tc.wantMount, "\n"))
			}
			stage := espStageIn(root)
			// An idle phase has no HookEnv; its ESP was still mounted (to
			// read config.yaml) and unmounted, checked below.
			if !tc.idle && (tc.wantESP != (got.ESP == stage) || (!tc.wantESP && got.ESP != "")) {
				t.Errorf("HookEnv.ESP = %q", got.ESP)
			}
			if tc.wantESP && (len(unmounts) != 1 || unmounts[0] != stage) {
				t.Errorf("unmounts %v, want [%s]", unmounts, stage)
			}
			if tc.idle == strings.Contains(log.String(), "warning: initramfs phase:") || !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("log:\n%s", log.String())
			}
		})
	}
}

func espStageIn(root string) string { return filepath.Join(root, espStage) }
