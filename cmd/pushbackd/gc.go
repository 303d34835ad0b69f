package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The server's live heap is small next to what it allocates: ~15 MB live with the demo
// config, ~40 KB allocated per request. At Go's default GOGC of 100 that means dozens of
// collections a second under load; GOGC 400 cut CPU per request in the bench's sync
// scenario from ~167 to ~141 µs. A flat 400 would not do for a very large configuration,
// though: its heap goal is five times the live heap. So GOGC follows the live heap: as
// high as 400 while the heap goal stays within gcHeapBudget, never below Go's default of
// 100. With 250,000 endpoints (~85 MB live) that is still 400, a ~425 MB goal: every cycle
// marks the whole configuration, so a low GOGC there costs CPU on every request.
const (
	gcHeapBudget   = 512 << 20
	minGCPercent   = 100
	maxGCPercent   = 400
	gcTuneInterval = time.Second
	liveHeapMetric = "/gc/heap/live:bytes"
)

// gcPercentFor is the GOGC whose heap goal for a heap of live bytes stays within
// gcHeapBudget, kept between minGCPercent and maxGCPercent.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	if live >= gcHeapBudget/2 {
		return minGCPercent
	}
	return int(min(max((gcHeapBudget-live)*100/live, minGCPercent), maxGCPercent))
}

// tuneGC sets GOGC from the live heap measured by the last collection, every interval,
// until ctx ends. It leaves GOGC alone when the operator set it.
func tuneGC(ctx context.Context, getenv func(string) string) {
	if getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: liveHeapMetric}}
	current := -1
	tick := time.NewTicker(gcTuneInterval)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercentFor(sample[0].Value.Uint64()); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
