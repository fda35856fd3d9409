package diskimage

import "fmt"

// CheckESPSize fails when go-diskfs v1.9.4 would format an ESP of sizeMiB
// MiB wrongly, and names the nearest sizes that work.
//
// The rule: go-diskfs sizes each FAT as ceil(4·(sectors−32) / (512·spc+8))
// sectors (spc: sectors per cluster, 1 up to 260 MiB, 8 up to 8 GiB),
// which leaves out FAT entries 0 and 1; they name no cluster but take FAT
// space. When that division comes out exact, or within those 8 bytes of
// exact, the FAT has room for the clusters but not for the two reserved
// entries, and fsck.fat reports "Filesystem has N clusters but only space
// for N−2 FAT entries". Up to 4 GiB that hits 64, 129, 194, 259 MiB (every
// 65 MiB while clusters are 512 bytes), then 505–507, 762–763, 1018–1020,
// 1275–1276, 1531–1533, 1788–1789, 2044–2046 … MiB (about every 256.5 MiB
// with 4 KiB clusters). Upstream: https://github.com/diskfs/go-diskfs/issues/418,
// fixed by https://github.com/diskfs/go-diskfs/pull/427 after v1.9.4 (the
// newest release on the module proxy). The layout cannot be patched after
// formatting the way fatfix.go patches entries (the data area would move),
// so the size is refused instead.
func CheckESPSize(sizeMiB int64) error {
	if fat32FitsFAT(sizeMiB * mib) {
		return nil
	}
	lo, hi := sizeMiB-1, sizeMiB+1
	for lo > 1 && !fat32FitsFAT(lo*mib) {
		lo--
	}
	for !fat32FitsFAT(hi * mib) {
		hi++
	}
	return fmt.Errorf("%d MiB: go-diskfs v1.9.4 formats a FAT32 volume of this size with a FAT two entries short of its clusters, which fsck.fat rejects (github.com/diskfs/go-diskfs/issues/418); use %d or %d", sizeMiB, lo, hi)
}

// fat32FitsFAT redoes go-diskfs v1.9.4's FAT32 layout arithmetic
// (filesystem/fat32/fat32.go, Create) for a volume of size bytes in
// 512-byte sectors, with its integer types, and tells whether the FAT
// has an entry for every cluster plus the two reserved ones.
func fat32FitsFAT(size int64) bool {
	const bytesPerSector, reservedSectors = 512, 32
	var clusterBytes int64
	switch {
	case size <= 260*mib:
		clusterBytes = 512
	case size <= 8<<30:
		clusterBytes = 4 << 10
	case size <= 16<<30:
		clusterBytes = 8 << 10
	case size <= 32<<30:
		clusterBytes = 16 << 10
	default:
		clusterBytes = 32 << 10
	}
	spc := uint32(clusterBytes / bytesPerSector)
	totalSectors := uint32(size / bytesPerSector)
	denom := bytesPerSector*spc + 8
	sectorsPerFAT := uint16((4*(totalSectors-reservedSectors) + denom - 1) / denom)
	dataSectors := int64(totalSectors) - reservedSectors - 2*int64(sectorsPerFAT)
	clusters := dataSectors / int64(spc)
	return int64(sectorsPerFAT)*bytesPerSector/4 >= clusters+2
}
