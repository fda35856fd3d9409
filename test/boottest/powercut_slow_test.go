//go:build slow

package boottest

// Behind the slow tag the power-cut test goes through all ten kill points
// five times (50 cuts) with fresh random delays.
func init() { powerCutRounds, powerCutAll = 5, true }
