package stage1

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/layout"
)

func isBusy(err error) bool { return errors.Is(err, unix.EBUSY) }

// SwitchRoot moves newRoot onto /, chroots into it and execs init with the
// current environment. It is the classic switch_root: the initramfs stays
// mounted underneath, unreachable.
//
// The program exec'd is the one running, the initramfs's /init (the kestrel
// binary, the same build as the root's init), with argv[0] = init, so it
// starts as stage 2: its pages are in memory already, while the root's copy
// would be paged in through dm-verity and squashfs, which hash and
// decompress all of it: 0.45 s of Kestrel's share of a boot, counting
// instructions (README, "Boot time"). The initramfs comes from the same ESP
// as the command line that holds the root hash, and the signed release
// covers both, so the binary is as trusted as the root. Only when that exec
// fails (no /proc in the new root) is the root's init exec'd, with a
// warning on the console.
func SwitchRoot(newRoot, init string) error {
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("chdir %s: %w", newRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	self := unix.Exec(layout.SelfExe, []string{init}, os.Environ())
	// Still a boot, a slower one: say why on the console.
	fmt.Fprintf(os.Stdout, "kestrel: warning: exec %s as %s: %v; running the root's %s\n", layout.SelfExe, init, self, init)
	if err := unix.Exec(init, []string{init}, os.Environ()); err != nil {
		return fmt.Errorf("exec %s (itself: %v): %w", init, self, err)
	}
	return nil
}
