package main

import (
	"slices"
	"testing"
)

// perTenSeconds gives the mean rate of each full 10 s of once-a-second counts, from the
// count before the first sample; a last part window is left out.
func TestPerTenSecondsAveragesEachFullTenSeconds(t *testing.T) {
	var samples []float64
	for i := 1; i <= 25; i++ {
		n := 100.0 * float64(i) // 100 a second for 10 s...
		if i > 10 {
			n = 1000 + 50*float64(i-10) // ...then 50 a second
		}
		samples = append(samples, 7+n)
	}
	if got, want := perTenSeconds(7, samples), []float64{100, 50}; !slices.Equal(got, want) {
		t.Errorf("perTenSeconds = %v; want %v", got, want)
	}
	if got := perTenSeconds(0, samples[:9]); len(got) != 0 {
		t.Errorf("perTenSeconds of 9 samples = %v; want none", got)
	}
}
