package stage1

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// ExecHook returns an Initramfs hook that runs the program at bin (a path
// inside the new root, such as layout.KestrelBin) with args followed by
// "-new-root DIR" and, when the ESP is mounted, "-esp DIR"; its output
// goes to out (the console). A non-zero exit is the hook's error.
//
// Why a program and not a function: the config's initramfs phase links
// the config parser (two YAML libraries), the datasources (net/http) and
// the rest of the config phases, which would make the initramfs's /init
// 9.4 MB instead of 3.5 MB, all of it decompressed and unpacked by the
// kernel before stage 1 starts. The rootfs's kestrel binary has that code
// anyway, and stage 2 execs the same file right after, from the page
// cache this run filled.
//
// The program runs in the initramfs's root, not chrooted: the paths it
// gets are initramfs paths, and it chroots itself where it must
// (init_cmd). Its input is empty: the initramfs has no /dev/null by then.
func ExecHook(out io.Writer, bin string, args ...string) func(HookEnv) error {
	return func(h HookEnv) error {
		path := filepath.Join(h.NewRoot, bin)
		argv := append(append([]string(nil), args...), "-new-root", h.NewRoot)
		if h.ESP != "" {
			argv = append(argv, "-esp", h.ESP)
		}
		cmd := exec.Command(path, argv...)
		// Not exec's default /dev/null: /dev has moved into the new root
		// by now, and the phase reads nothing from its input.
		cmd.Stdin = strings.NewReader("")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %v: %w", path, argv, err)
		}
		return nil
	}
}
