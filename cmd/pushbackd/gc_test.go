package main

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
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

// GOGC and the soft memory limit wait for the first configuration: loading a large one,
// with no requests yet, runs with Go's defaults (see tuneGC).
func TestTheCollectorIsTunedOnceTheFirstConfigurationIsApplied(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	var h configHeap
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tuneGC(ctx, func(string) string { return "" }, &h); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(3 * gcTuneInterval / 2) // past a tick, had the loop started
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("memory limit %d MB before any configuration was applied; want none", l>>20)
	}
	if got := gcPercentNow(); got != 100 {
		t.Fatalf("GOGC %d before any configuration was applied; want Go's 100", got)
	}
	h.measure()
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) == math.MaxInt64 {
		if time.Now().After(deadline) {
			t.Fatal("no memory limit 10 s after the configuration was applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := gcPercentNow(); got != gcPercent {
		t.Errorf("GOGC %d once the configuration was applied, want %d", got, gcPercent)
	}
}

// gcPercentNow reads GOGC (SetGCPercent returns the old value; putting it back at once).
func gcPercentNow() int {
	old := debug.SetGCPercent(100)
	debug.SetGCPercent(old)
	return old
}
