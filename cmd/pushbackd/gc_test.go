package main

import (
	"runtime"
	"testing"
	"time"
)

func TestTheMemoryLimitFollowsTheLiveHeap(t *testing.T) {
	for _, tc := range []struct {
		live, config uint64
		want         int64
	}{
		{0, 0, 100 << 20},                  // nothing measured yet: the budget
		{15 << 20, 12 << 20, 100 << 20},    // the demo config: GOGC 400's 75 MB goal is within it
		{40 << 20, 12 << 20, 100 << 20},    // 64 workers on 200 KB bodies: held to the budget, not 200 MB
		{50 << 20, 12 << 20, 100 << 20},    // the budget is twice the live heap here
		{120 << 20, 12 << 20, 240 << 20},   // request data past the budget: twice the live heap, as GOGC 100
		{85 << 20, 85 << 20, 425 << 20},    // 250,000 endpoints: the configuration collected as at GOGC 400
		{130 << 20, 85 << 20, 425 << 20},   // ... and what requests add still within that goal
		{900 << 20, 100 << 20, 1800 << 20}, // never more often than GOGC 100
	} {
		if got := memoryLimitFor(tc.live, tc.config); got != tc.want {
			t.Errorf("memoryLimitFor(%d MB, config %d MB) = %d MB, want %d MB", tc.live>>20, tc.config>>20, got>>20, tc.want>>20)
		}
	}
}

func TestConfigHeapMeasuresWhatIsLive(t *testing.T) {
	held := make([]byte, 32<<20) // stands for a large configuration
	var h configHeap
	h.measure()
	deadline := time.Now().Add(10 * time.Second)
	for h.bytes.Load() < 32<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("measured %d MB live, want at least the 32 MB held", h.bytes.Load()>>20)
		}
		time.Sleep(5 * time.Millisecond)
	}
	runtime.KeepAlive(held)
}
