package coldplug

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// openUevents subscribes to the kernel's uevents and returns a function
// that reads, without blocking, the MODALIAS of every device added since
// the last call, and one that closes the socket; the caller serialises the
// two (Loader.evMu). When the socket cannot be opened (no privilege, a test)
// it falls back to rescanning sysfs each time.
func openUevents(sysRoot string) (func() []string, func()) {
	rescan := func() []string { return DeviceAliases(sysRoot) }
	if sysRoot != "/sys" {
		return rescan, func() {}
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return rescan, func() {}
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return rescan, func() {}
	}
	buf := make([]byte, 64*1024)
	overflowed := false
	closed := false
	read := func() []string {
		if closed { // never read a number the fd table may have reused
			return nil
		}
		var out []string
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EINTR {
				continue
			}
			if err == unix.ENOBUFS { // events were lost: look at everything
				overflowed = true
				continue
			}
			if err != nil || n <= 0 {
				break
			}
			if a := parseUevent(buf[:n]); a != "" {
				out = append(out, a)
			}
		}
		if overflowed {
			overflowed = false
			return rescan()
		}
		return out
	}
	return read, func() {
		if !closed {
			closed = true
			unix.Close(fd)
		}
	}
}

// parseUevent returns the MODALIAS of an "add" uevent, or "".
func parseUevent(msg []byte) string {
	fields := bytes.Split(msg, []byte{0})
	add, alias := false, ""
	for _, f := range fields {
		switch {
		case bytes.Equal(f, []byte("ACTION=add")):
			add = true
		case bytes.HasPrefix(f, []byte("MODALIAS=")):
			alias = string(f[len("MODALIAS="):])
		}
	}
	if !add {
		return ""
	}
	return alias
}
