package randomseed

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rndAddEntropy is RNDADDENTROPY, _IOW('R', 0x03, int[2]).
const rndAddEntropy = 0x40085203

// Linux is the running kernel's pool.
type Linux struct{}

// AddEntropy calls RNDADDENTROPY on /dev/urandom (needs CAP_SYS_ADMIN).
func (Linux) AddEntropy(b []byte, bits int) error {
	fd, err := unix.Open("/dev/urandom", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(b))
	binary.NativeEndian.PutUint32(info[0:], uint32(bits))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(b)))
	copy(info[8:], b)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), rndAddEntropy, uintptr(unsafe.Pointer(&info[0])))
	if errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}

// Read uses getrandom(2).
func (Linux) Read(b []byte, block bool) error {
	flags := unix.GRND_NONBLOCK
	if block {
		flags = 0
	}
	for n := 0; n < len(b); {
		m, err := unix.Getrandom(b[n:], flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}

// lowest sets the calling thread to nice 19 (Linux priorities are per
// thread). Failing leaves it where it is: only the boot is slower.
func lowest() { unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19) }
