//go:build slow

package boottest

// Behind the slow tag the power-cut test goes through its kill points five
// times (50 cuts) with fresh random delays.
func init() { powerCutRounds = 5 }
