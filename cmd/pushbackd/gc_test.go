package main

import "testing"

func TestGCPercentFollowsTheLiveHeap(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 400},         // nothing measured yet
		{10 << 20, 400},  // the demo config: capped
		{16 << 20, 400},  // 64 MB of headroom is exactly 400%
		{32 << 20, 200},  // headroom over a mid-sized heap
		{64 << 20, 100},  // Go's default from here on
		{330 << 20, 100}, // 250,000 endpoints: never below the default
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}
