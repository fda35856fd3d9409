//go:build slow

package diskimage

import "testing"

// TestESPSizesEveryMiB is TestESPSizes for every size from 1 MiB to
// 4200 MiB, past go-diskfs's 260 MiB and 4 GiB boundaries.
func TestESPSizesEveryMiB(t *testing.T) {
	var sizes []int64
	for s := int64(1); s <= 4200; s++ {
		sizes = append(sizes, s)
	}
	checkESPSizes(t, sizes)
}
