package coldplug

import "golang.org/x/sys/unix"

// errNoDevice is what a driver's init returns when its hardware or
// firmware interface is absent (efivarfs without EFI): not a failure.
var errNoDevice error = unix.ENODEV

func uname() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
