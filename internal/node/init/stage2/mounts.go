package stage2

import (
	"path/filepath"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/node/boot/mounts"
)

// Mounts returns the mounts stage 2 adds to what stage 1 prepared, in
// order. Paths are under root ("/" on the device). Optional ones may be
// missing from a kernel without the node failing.
func Mounts(root string) []mounts.Mount {
	p := func(s string) string { return filepath.Join(root, s) }
	const nosuidNodevNoexec = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
	return []mounts.Mount{
		// k3s and containerd need shared propagation so volume mounts
		// made inside pods reach the host and back.
		{Source: "", Target: p("/"), Flags: syscall.MS_REC | syscall.MS_SHARED},
		{Source: "devpts", Target: p("/dev/pts"), FSType: "devpts", Flags: syscall.MS_NOSUID | syscall.MS_NOEXEC, Data: "gid=5,mode=620,ptmxmode=666"},
		{Source: "shm", Target: p("/dev/shm"), FSType: "tmpfs", Flags: syscall.MS_NOSUID | syscall.MS_NODEV, Data: "mode=1777"},
		{Source: "mqueue", Target: p("/dev/mqueue"), FSType: "mqueue", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "cgroup2", Target: p("/sys/fs/cgroup"), FSType: "cgroup2", Flags: nosuidNodevNoexec, Data: "nsdelegate"},
		{Source: "securityfs", Target: p("/sys/kernel/security"), FSType: "securityfs", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "debugfs", Target: p("/sys/kernel/debug"), FSType: "debugfs", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "tracefs", Target: p("/sys/kernel/tracing"), FSType: "tracefs", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "configfs", Target: p("/sys/kernel/config"), FSType: "configfs", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "pstore", Target: p("/sys/fs/pstore"), FSType: "pstore", Flags: nosuidNodevNoexec, Optional: true},
	}
}

// LateMounts are mounted after the node is ready, in the background:
// mounting bpffs makes the kernel request the bpf_preload module through
// the usermode modprobe helper, which costs up to a second under qemu and
// nothing at boot needs it (CNI plugins that use BPF start with k3s,
// later).
func LateMounts(root string) []mounts.Mount {
	const nosuidNodevNoexec = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
	return []mounts.Mount{
		{Source: "bpf", Target: filepath.Join(root, "/sys/fs/bpf"), FSType: "bpf", Flags: nosuidNodevNoexec, Data: "mode=700", Optional: true},
	}
}
