package stage1

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func isBusy(err error) bool { return errors.Is(err, unix.EBUSY) }

// SwitchRoot moves newRoot onto /, chroots into it and execs init with
// the current environment. It is the classic switch_root: the initramfs
// stays mounted underneath, unreachable.
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
	if err := unix.Exec(init, []string{init}, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", init, err)
	}
	return nil
}
