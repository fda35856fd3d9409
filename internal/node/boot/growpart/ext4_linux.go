package growpart

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64); the same
// number on every architecture Kestrel targets.
const ext4IocResizeFS = 0x40086610

func resizeFS(mountPoint string, blocks uint64) error {
	fd, err := unix.Open(mountPoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n := blocks
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ext4IocResizeFS, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return errno
	}
	return nil
}
