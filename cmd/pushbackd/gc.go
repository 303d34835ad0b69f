package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// The server's live heap is small next to what it allocates: ~15 MB live with the demo
// config, ~40 KB allocated per request. At Go's default GOGC of 100 that means dozens of
// collections a second under load; GOGC 400 cut CPU per request in the bench's sync
// scenario from ~167 to ~141 µs. So GOGC is 400.
//
// A heap goal five times the live heap is a lot of memory, though, when the live heap is
// large because of what the workers execute (a run holds its request body twice, raw and
// parsed: 64 workers on 200 KB bodies are ~40 MB live). So the collector also gets a soft
// memory limit: memoryBudget, or twice the live heap once that is larger. The runtime
// enforces it between collections, so a burst of large requests cannot run the heap up to
// five times itself before the next measurement.
//
// A large configuration is different: it is live for as long as the process, and holding
// the heap to twice it made the collector mark it as often as at GOGC 100. With 250,000
// endpoints (~85 MB live) that cost 26 µs of a sync request's 93 (bench scenario 5,
// against 67 µs with one partner). So the limit never holds the heap below GOGC 400's goal
// for the configuration's own heap (configHeap: the live heap measured by a collection
// right after a configuration is applied); only what requests add is held to twice itself.
const (
	gcPercent      = 400
	memoryBudget   = 100 << 20
	gcTuneInterval = time.Second
	liveHeapMetric = "/gc/heap/live:bytes"
)

// memoryLimitFor is the soft memory limit for a heap of live bytes, of which config are
// the configuration's.
func memoryLimitFor(live, config uint64) int64 {
	return int64(max(memoryBudget, 2*live, config*(100+gcPercent)/100))
}

// configHeap measures the live heap with the configuration just applied: one collection,
// off the caller's goroutine (with 250,000 endpoints it takes ~0.1 s), which also gives
// what loading left behind back to the OS (with those endpoints, RssAnon 250 → 112 MB).
// bytes is zero until the first configuration is applied and measured, and never after.
type configHeap struct{ bytes atomic.Uint64 }

func (h *configHeap) measure() {
	go func() {
		debug.FreeOSMemory()
		live, _ := liveHeap() // unreadable: no configuration heap to keep the limit above
		h.bytes.Store(max(live, 1))
	}()
}

// liveHeap is the live heap the last collection measured.
func liveHeap() (uint64, bool) {
	sample := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	return sample[0].Value.Uint64(), true
}

// tuneGC, once the first configuration is applied, sets GOGC to gcPercent, unless the
// operator set GOGC, and the soft memory limit from the live heap measured by the last
// collection and the configuration's heap every interval until ctx ends, unless the
// operator set GOMEMLIMIT.
//
// Until then the collector runs as Go's defaults have it. Loading the configuration, with
// no requests yet, is when the heap grows fastest, and neither setting fits it: the limit,
// sized before the configuration's heap is known, held a 250,000-endpoint load (~85 MB
// live) to collection after collection, 5.4–5.9 s from start to ready; GOGC 400 without
// the limit took 3.2 s but peaked at ~760 MB of RssAnon and gave it back to the OS only
// over the next seconds. At GOGC 100 it took 4.5–5.0 s (alternating starts with the old
// way on a drifting host) and ~250 MB.
func tuneGC(ctx context.Context, getenv func(string) string, config *configHeap) {
	tick := time.NewTicker(gcTuneInterval)
	defer tick.Stop()
	for config.bytes.Load() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	current := int64(-1)
	for {
		if live, ok := liveHeap(); ok {
			if l := memoryLimitFor(live, config.bytes.Load()); l != current {
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
