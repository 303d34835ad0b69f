package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/memory"
)

// backends are the stores the must-hold tests run on.
var backends = []struct {
	name string
	open func(t *testing.T, clock store.Clock) testStore
}{
	{"memory", func(t *testing.T, clock store.Clock) testStore { return memory.New(clock) }},
	{"bbolt", func(t *testing.T, clock store.Clock) testStore {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "pushbackd.db"), bolt.Options{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := st.Check(); err != nil {
				t.Errorf("the data file after the test: %v", err)
			}
			_ = st.Close()
		})
		return st
	}},
}

// Isolation: with two workers, ten runs throttled by a downstream that answers 503
// Retry-After: 30 do not hold up anyone else: twenty runs of a pure saga that arrive next
// all succeed within 2 s of their accept, while the throttled runs wait in the store.
func TestAThrottledDownstreamDoesNotStallOtherRuns(t *testing.T) {
	var throttledCalls atomic.Int32
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		throttledCalls.Add(1)
		w.Header().Set("Retry-After", "30")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	throttled := mustSaga(t, `name: throttled
steps:
  - name: call
    http: {url: "`+busy.URL+`"}
    retry: {attempts: 5, backoff: 1s}
`)
	pure := mustSaga(t, "name: pure\nsteps:\n  - {name: a, set: {x: 1}}\n  - {name: b, log: {message: done}}\n")
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			throttledCalls.Store(0)
			st := b.open(t, nil) // real time: the 2 s are wall-clock seconds
			r := startRig(t, Options{Store: st, Workers: 2, QueueSize: 100}, st, nil, throttled, pure)
			defer r.stop()
			var slow, fast []*store.Run
			for i := range 10 {
				run, _, err := r.accept("throttled", fmt.Sprint("T-", i), "")
				if err != nil {
					t.Fatal(err)
				}
				slow = append(slow, run)
			}
			for i := range 20 {
				run, _, err := r.accept("pure", fmt.Sprint("P-", i), "")
				if err != nil {
					t.Fatal(err)
				}
				fast = append(fast, run)
			}
			for _, run := range fast {
				got := r.waitStatus(run.ID, store.StatusSucceeded)
				if took := got.FinishedAt.Sub(run.ReceivedAt); took > 2*time.Second {
					t.Errorf("pure run %s finished %v after its accept, want within 2s", run.ID, took)
				}
			}
			for _, run := range slow {
				got := r.waitStatus(run.ID, store.StatusWaiting)
				if wait := got.WakeAt.Sub(got.UpdatedAt); wait < 29*time.Second || wait > 31*time.Second {
					t.Errorf("throttled run %s waits %v, want the 30s Retry-After asked", run.ID, wait)
				}
			}
			if n := throttledCalls.Load(); n != 10 {
				t.Errorf("the throttled downstream was called %d times, want 10: one try each, then a wait", n)
			}
			if n := executingAfterSettling(r.d); n != 0 {
				t.Errorf("%d runs hold a worker while they wait", n)
			}
		})
	}
}

// A worker that stalls past its lease loses the run: another worker resumes it once the
// lease has expired, and the stalled one, when it wakes up, can write nothing.
func TestAStalledWorkersRunIsResumedElsewhereAndItsWritesAreRefused(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			<-release // the first worker stalls here
			w.Write([]byte(`{"who":"stalled"}`))
			return
		}
		w.Write([]byte(`{"who":"rescuer"}`))
	}))
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	s := mustSaga(t, "name: call\nsteps:\n  - {name: c, http: {url: \""+srv.URL+"\"}}\n")
	clock := newFakeClock()
	st := memory.New(clock)
	// The stalled process: its timers never fire, so it never renews its lease.
	stalled := startRig(t, Options{Store: st, Clock: stopped{clock}, Workers: 1, Owner: "stalled", LeaseTTL: time.Minute}, st, clock, s)
	run, _, err := stalled.accept("call", "L-1", "")
	if err != nil {
		t.Fatal(err)
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	rescuer := startRig(t, Options{Store: st, Clock: clock, Workers: 1, Owner: "rescuer", LeaseTTL: time.Minute}, st, clock, s)
	defer rescuer.stop()
	time.Sleep(20 * time.Millisecond)
	if got, _ := st.GetRun(context.Background(), run.ID); got.Status != store.StatusRunning || calls.Load() != 1 {
		t.Fatalf("taken before the lease expired: %s after %d calls", got.Status, calls.Load())
	}
	clock.Advance(time.Minute)
	done := rescuer.waitStatus(run.ID, store.StatusSucceeded)
	if done.Attempt != 2 || !strings.Contains(string(done.Result), "rescuer") {
		t.Fatalf("rescued run: attempt %d result %s", done.Attempt, done.Result)
	}
	close(release)
	stalled.stop()
	after, _ := st.GetRun(context.Background(), run.ID)
	if string(after.Result) != string(done.Result) || after.Attempt != 2 {
		t.Fatalf("the stalled worker overwrote the outcome: %s", after.Result)
	}
}

// watchedStore counts store calls made after the test said the store is closed.
type watchedStore struct {
	Store
	closed atomic.Bool
	late   atomic.Int32
}

func (w *watchedStore) touch() {
	if w.closed.Load() {
		w.late.Add(1)
	}
}

func (w *watchedStore) Create(ctx context.Context, r *store.Run, o store.CreateOptions) (store.CreateResult, error) {
	w.touch()
	return w.Store.Create(ctx, r, o)
}

func (w *watchedStore) Claim(ctx context.Context, owner string, n int, ttl time.Duration) (store.ClaimResult, error) {
	w.touch()
	return w.Store.Claim(ctx, owner, n, ttl)
}

func (w *watchedStore) Save(ctx context.Context, r *store.Run, l store.Lease) error {
	w.touch()
	return w.Store.Save(ctx, r, l)
}

func (w *watchedStore) Release(ctx context.Context, l store.Lease) error {
	w.touch()
	return w.Store.Release(ctx, l)
}

func (w *watchedStore) Renew(ctx context.Context, ls []store.Lease, ttl time.Duration) ([]string, error) {
	w.touch()
	return w.Store.Renew(ctx, ls, ttl)
}

// Stop waits for executing runs until its context ends, then interrupts them: they stop
// without compensating or recording an outcome, their leases go back to the store so the
// next start resumes them at once, and Stop returns only once every worker has returned —
// no store call comes after it.
func TestStopInterruptsRunsAfterItsGracePeriodAndReturnsWhenTheyHave(t *testing.T) {
	var undone atomic.Int32
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/undo" {
			undone.Add(1)
			return
		}
		entered <- struct{}{}
		<-r.Context().Done() // answers only when the caller gives up
	}))
	defer srv.Close()
	s := mustSaga(t, `name: held
steps:
  - name: made
    kv: {op: put, key: k, value: 1}
    compensate: {http: {url: "`+srv.URL+`/undo"}}
  - name: held
    http: {url: "`+srv.URL+`/hold"}
`)
	clock := newFakeClock()
	st := memory.New(clock)
	watched := &watchedStore{Store: st}
	r := newRigOn(t, watched, st, clock, clock, 2, 10, s)
	run, _, err := r.accept("held", "L-1", "")
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = r.d.Stop(ctx)
	watched.closed.Store(true)
	if err == nil || !strings.Contains(err.Error(), "1 runs still executing at shutdown were interrupted") {
		t.Fatalf("Stop = %v, want it to say one run was interrupted", err)
	}
	if took := time.Since(began); took < 100*time.Millisecond {
		t.Errorf("Stop interrupted after %v, before its grace period of 100ms", took)
	}
	time.Sleep(50 * time.Millisecond)
	if n := watched.late.Load(); n != 0 {
		t.Fatalf("%d store calls after Stop returned", n)
	}
	if n := undone.Load(); n != 0 {
		t.Errorf("an interrupted run was compensated %d times", n)
	}
	got, _ := st.GetRun(context.Background(), run.ID)
	if got.Status != store.StatusRunning || len(got.Result) != 0 {
		t.Fatalf("interrupted run stored as %s with result %s, want running and no outcome", got.Status, got.Result)
	}
	next, err := st.Claim(context.Background(), "next start", 1, time.Minute)
	if err != nil || len(next.Runs) != 1 || next.Runs[0].Run.Attempt != 2 {
		t.Fatalf("the next start's claim = %+v, %v; want the run at once, as attempt 2", next.Runs, err)
	}
}

// live counts the fake clock's timers that have neither fired nor been stopped.
func (c *fakeClock) live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

// Waiting runs cost the dispatcher nothing: a thousand debounce waits are rows in the store
// behind one timer, and the runs they supersede leave nothing behind.
func TestWaitingRunsShareOneTimer(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	r := newRig(t, st, clock, clock, 4, 10000, mustSaga(t, debouncedSaga))
	defer r.stop()
	var distinct, same []*store.Run
	for i := range 500 {
		run, _, err := r.accept("debounced", fmt.Sprint("L-", i), "")
		if err != nil {
			t.Fatal(err)
		}
		distinct = append(distinct, run)
		run, _, err = r.accept("debounced", "same", "")
		if err != nil {
			t.Fatal(err)
		}
		same = append(same, run)
	}
	if n := clock.live(); n > 2 {
		t.Fatalf("%d timers for 1000 waiting runs, want at most 2 (the claim timer and the lease renewal)", n)
	}
	if n := r.d.QueueDepth(); n != 501 {
		t.Errorf("queue depth %d, want 501: 500 distinct keys and the last of the shared one", n)
	}
	clock.Advance(10 * time.Second)
	for _, run := range distinct {
		r.waitStatus(run.ID, store.StatusSucceeded)
	}
	r.waitStatus(same[len(same)-1].ID, store.StatusSucceeded)
	for _, run := range same[:len(same)-1] {
		if got, _ := st.GetRun(context.Background(), run.ID); got.Status != store.StatusSuperseded {
			t.Fatalf("run %s is %s, want superseded", run.ID, got.Status)
		}
	}
	if n := executingAfterSettling(r.d); n != 0 {
		t.Errorf("%d runs left executing", n)
	}
}

// A sync run that must wait past its sender's deadline suspends: the sender is answered at
// once (RunSync returns waiting) and a worker finishes the run when the wait is over. One
// whose wait ends in time sleeps through it and answers.
func TestASyncRunThatMustWaitPastItsDeadlineGoesOnWithoutItsSender(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		want     string
	}{
		{"a wait past the deadline suspends", 5 * time.Second, saga.StatusWaiting},
		{"a wait within the deadline is slept", time.Minute, saga.StatusSucceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if calls.Add(1) == 1 {
					w.Header().Set("Retry-After", "30")
					http.Error(w, "busy", http.StatusServiceUnavailable)
				}
			}))
			defer srv.Close()
			s := mustSaga(t, "name: call\nsteps:\n  - {name: c, http: {url: \""+srv.URL+"\"}, retry: {attempts: 2, backoff: 1s}}\n")
			clock := newFakeClock()
			st := memory.New(clock)
			r := newRig(t, st, clock, clock, 1, 10, s)
			defer r.stop()
			run, inv := r.newRun("call", "L-1", "")
			inv.SleepUntil = clock.Now().Add(tc.deadline)
			res, _, err := r.d.RunSync(context.Background(), run, inv, store.CreateOptions{})
			if err != nil || res.Status != tc.want {
				t.Fatalf("RunSync = %+v, %v; want %s", res, err, tc.want)
			}
			if tc.want == saga.StatusWaiting {
				r.waitStatus(run.ID, store.StatusWaiting)
				clock.Advance(30 * time.Second)
			}
			done := r.waitStatus(run.ID, store.StatusSucceeded)
			if done.Mode != "sync" || calls.Load() != 2 {
				t.Errorf("finished %s run after %d calls", done.Mode, calls.Load())
			}
		})
	}
}

// A store write that fails is not the end: a claim that fails is tried again.
type failingClaims struct {
	Store
	mu    sync.Mutex
	fails int
}

func (f *failingClaims) Claim(ctx context.Context, owner string, n int, ttl time.Duration) (store.ClaimResult, error) {
	f.mu.Lock()
	fail := f.fails > 0
	f.fails--
	f.mu.Unlock()
	if fail {
		return store.ClaimResult{}, errors.New("disk on fire")
	}
	return f.Store.Claim(ctx, owner, n, ttl)
}

func TestAFailedClaimIsTriedAgain(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	// No worker is free at the accept, so the run is queued, and the first claims fail.
	if _, err := st.Create(context.Background(), &store.Run{Partner: "acme", Endpoint: "e", Saga: "pure", Mode: "async",
		Request: store.Request{Body: []byte("L-1")}}, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	r := startRig(t, Options{Store: &failingClaims{Store: st, fails: 2}, Clock: clock, Workers: 1, QueueSize: 10, Logger: zap.New(core)},
		st, clock, mustSaga(t, pureSaga))
	defer r.stop()
	runs, _, _ := st.List(context.Background(), store.Filter{})
	for range 2 {
		time.Sleep(20 * time.Millisecond)
		clock.Advance(claimRetry)
	}
	r.waitStatus(runs[0].ID, store.StatusSucceeded)
	// Two failures in a row are one line, and the recovery says so.
	if n := logs.FilterMessageSnippet("cannot claim runs").Len(); n != 1 {
		t.Errorf("%d lines say the claim failed; want one for the failures in a row", n)
	}
	if logs.FilterMessage("claiming runs again").Len() != 1 {
		t.Errorf("no line says claims work again: %v", logs.All())
	}
}

// An async run accepted while a worker is free is created already claimed by it, in the
// same commit: the run costs one create and one outcome, as before runs were claimed.
func TestARunAcceptedByAFreeWorkerCostsNoClaim(t *testing.T) {
	url, _ := counter(t)
	clock := newFakeClock()
	st := memory.New(clock)
	runs := &countingRuns{Store: st}
	r := newRigOn(t, runs, st, clock, clock, 2, 10, mustSaga(t, "name: call\nsteps:\n  - {name: c, http: {url: \""+url+"\"}}\n"))
	run, _, err := r.accept("call", "L-1", "")
	if err != nil {
		t.Fatal(err)
	}
	r.waitStatus(run.ID, store.StatusSucceeded)
	r.stop()
	if c, u, cl := runs.creates.Load(), runs.updates.Load(), runs.claims.Load(); c != 1 || u != 1 || cl != 0 {
		t.Errorf("%d creates, %d saves and %d claims; want one create, one save (the outcome) and no claim", c, u, cl)
	}
}
