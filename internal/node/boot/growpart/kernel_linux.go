package growpart

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BLKPG interface (linux/blkpg.h).
const (
	blkpgIoctl           = 0x1269 // BLKPG
	blkpgResizePartition = 3      // BLKPG_RESIZE_PARTITION
	blkrrpart            = 0x125f // BLKRRPART
)

type blkpgIoctlArg struct {
	Op      int32
	Flags   int32
	Datalen int32
	Data    unsafe.Pointer
}

// blkpgPartition mirrors struct blkpg_partition. The trailing pad makes
// the Go size equal the C size (152) on 32-bit ARM too, where Go aligns
// int64 to 4 bytes but the C ABI to 8.
type blkpgPartition struct {
	Start   int64 // bytes
	Length  int64 // bytes
	Pno     int32
	Devname [64]byte
	Volname [64]byte
	_       [4]byte
}

// kernelResize tells the kernel the new size of one partition. BLKPG works
// with the disk in use; BLKRRPART is the fallback and only succeeds when no
// partition of the disk is open.
func kernelResize(f *os.File, r Result) error {
	p := blkpgPartition{
		Start:  int64(r.Start) * SectorSize,
		Length: r.NewSizeB,
		Pno:    int32(r.PartNum),
	}
	arg := blkpgIoctlArg{Op: blkpgResizePartition, Datalen: int32(unsafe.Sizeof(p)), Data: unsafe.Pointer(&p)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), blkpgIoctl, uintptr(unsafe.Pointer(&arg)))
	if errno == 0 {
		return nil
	}
	_, _, errno2 := unix.Syscall(unix.SYS_IOCTL, f.Fd(), blkrrpart, 0)
	if errno2 == 0 {
		return nil
	}
	return fmt.Errorf("BLKPG resize: %v; BLKRRPART: %v", errno, errno2)
}
