package main

import "testing"

func TestTheMemoryLimitFollowsTheLiveHeap(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int64
	}{
		{0, 100 << 20},          // nothing measured yet: the budget
		{15 << 20, 100 << 20},   // the demo config: GOGC 400's 75 MB goal is within it
		{40 << 20, 100 << 20},   // 64 workers on 200 KB bodies: held to the budget, not 200 MB
		{50 << 20, 100 << 20},   // the budget is twice the live heap here
		{85 << 20, 170 << 20},   // 250,000 endpoints: twice the live heap, as GOGC 100
		{900 << 20, 1800 << 20}, // never more often than GOGC 100
	} {
		if got := memoryLimitFor(tc.live); got != tc.want {
			t.Errorf("memoryLimitFor(%d MB) = %d MB, want %d MB", tc.live>>20, got>>20, tc.want>>20)
		}
	}
}
