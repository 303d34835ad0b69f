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
// scenario from ~167 to ~141 µs. So GOGC is 400.
//
// A heap goal five times the live heap is a lot of memory, though, when the live heap is
// large: what the workers execute (a run holds its request body twice, raw and parsed: 64
// workers on 200 KB bodies are ~40 MB live) or a very large configuration. So the
// collector also gets a soft memory limit: memoryBudget, or twice the live heap once that
// is larger. The runtime enforces it between collections, so a burst of large requests
// cannot run the heap up to five times itself before the next measurement, and the
// collector never runs more often than at Go's default GOGC of 100. (With 250,000
// endpoints, ~85 MB live, that is a ~170 MB limit: collections as frequent as at GOGC 100.)
const (
	gcPercent      = 400
	memoryBudget   = 100 << 20
	gcTuneInterval = time.Second
	liveHeapMetric = "/gc/heap/live:bytes"
)

// memoryLimitFor is the soft memory limit for a heap of live bytes.
func memoryLimitFor(live uint64) int64 {
	return int64(max(memoryBudget, 2*live))
}

// tuneGC sets GOGC to gcPercent, unless the operator set GOGC, and the soft memory limit
// from the live heap measured by the last collection every interval until ctx ends, unless
// the operator set GOMEMLIMIT.
func tuneGC(ctx context.Context, getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	sample := []metrics.Sample{{Name: liveHeapMetric}}
	current := int64(-1)
	tick := time.NewTicker(gcTuneInterval)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if l := memoryLimitFor(sample[0].Value.Uint64()); l != current {
				debug.SetMemoryLimit(l)
				current = l
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
