package stage2

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fullBelow is the free space under which a filesystem counts as full: a
// few blocks are not enough to rotate a log or write a lease.
const fullBelow = 64 << 10

// diskFull reports the filesystem at path as full, or read-only: a sentence for
// `kestrel status` and true, or "" and false when it has room (or cannot
// be examined: that is not the condition this reports). Free space is what
// an unprivileged writer gets (f_bavail), as services' logs and k3s's
// data share it with users.
func diskFull(path string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil || st.Blocks == 0 {
		return "", false
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		// Stage 1 mounts it errors=remount-ro: the kernel found an error.
		return fmt.Sprintf("state partition %s is read-only (a filesystem error? see dmesg): nothing persists until it is repaired", path), true
	}
	free := st.Bavail * uint64(st.Bsize)
	if free >= fullBelow && (st.Files == 0 || st.Ffree > 0) {
		return "", false
	}
	used := 100 - 100*st.Bavail/st.Blocks
	what := fmt.Sprintf("%d KiB free", free>>10)
	if st.Files > 0 && st.Ffree == 0 {
		what = "no inodes free"
	}
	return fmt.Sprintf("state partition %s is full (%d%% used, %s): service logs are dropped and k3s may fail until space is freed", path, used, what), true
}
