package main

import "testing"

func TestGCPercentFollowsTheLiveHeap(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 400},         // nothing measured yet
		{15 << 20, 400},  // the demo config: capped
		{128 << 20, 300}, // a goal of 512 MB
		{85 << 20, 400},  // 250,000 endpoints: a 425 MB goal
		{111 << 20, 361}, // a goal just under 512 MB
		{200 << 20, 156}, // still within the budget
		{256 << 20, 100}, // Go's default from here on
		{900 << 20, 100}, // never below it
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}
