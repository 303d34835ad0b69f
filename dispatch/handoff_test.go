package dispatch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// claimCounter counts the runs taken from the store by Claim: a run handed to a worker at
// its accept is never claimed.
type claimCounter struct {
	testStore
	claimed atomic.Int32
}

func (c *claimCounter) Claim(ctx context.Context, owner string, limit int, ttl time.Duration) (store.ClaimResult, error) {
	res, err := c.testStore.Claim(ctx, owner, limit, ttl)
	c.claimed.Add(int32(len(res.Runs)))
	return res, err
}

// settle waits for the claimer's first look at the store (started with the dispatcher) to
// have found it empty: until then a freed worker goes to the store, not to an accept.
func (r *rig) settle() {
	waitUntil(r.t, "the claimer's first look at the store", func() bool { return !r.d.hasBacklog() })
}

func (r *rig) waiting() int {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return len(r.d.waiters)
}

// holdTheOnlyWorker starts a dispatcher on st with one worker and the saga "call", whose
// http step sends {"loan": body.loan} to a gate that holds every call until release, and
// accepts a run of it (loan L-0) that holds that worker: the accepts after it find every
// worker busy. bodies lists what the gate was sent, in order.
func holdTheOnlyWorker(t *testing.T, st testStore, wait time.Duration) (r *rig, held *store.Run, release func(), bodies func() []string) {
	t.Helper()
	url, release, calls, bodies := recordingGate(t)
	s := mustSaga(t, "name: call\nsteps:\n  - name: call\n    http: {url: \""+url+"\", json: {loan: \"${ body.loan }\"}}\n")
	r = startRig(t, Options{Store: st, Workers: 1, QueueSize: 100, HandoffWait: wait}, st, nil, s)
	r.settle()
	held, _, err := r.accept("call", "L-0", "")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the only worker to be held by the downstream", func() bool { return calls.Load() > 0 })
	return r, held, release, bodies
}

// acceptBehind sends an accept of "call" for loan in the background, waits until it waits
// for a worker, and returns where its run arrives once it is answered.
func (r *rig) acceptBehind(loan string) <-chan *store.Run {
	r.t.Helper()
	before := r.waiting()
	answered := make(chan *store.Run, 1)
	go func() {
		run, _, err := r.accept("call", loan, "")
		if err != nil {
			r.t.Error(err)
		}
		answered <- run
	}()
	waitUntil(r.t, "the accept to wait for a worker", func() bool { return r.waiting() > before })
	return answered
}

// backlog queues a run of "call" per loan in st, as a restart or a woken retry leaves runs
// there, and tells the dispatcher the store holds due runs.
func (r *rig) backlog(st testStore, loans ...string) []*store.Run {
	r.t.Helper()
	var runs []*store.Run
	for _, loan := range loans {
		run, _ := r.newRun("call", loan, "")
		run.Mode, run.Status = "async", store.StatusQueued
		if _, err := st.Create(context.Background(), run, store.CreateOptions{}); err != nil {
			r.t.Fatal(err)
		}
		runs = append(runs, run)
	}
	r.d.poke()
	return runs
}

// An async accept that finds every worker busy waits for one to free up and hands its run
// straight to it: the run is created already claimed, as when a worker was free, and never
// costs a claim (a write, and a read of its request back).
func TestAnAcceptThatFindsEveryWorkerBusyHandsItsRunToTheNextFreedOne(t *testing.T) {
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			st := &claimCounter{testStore: b.open(t, nil)}
			r, first, release, _ := holdTheOnlyWorker(t, st, time.Minute)
			defer r.stop()
			second := r.acceptBehind("L-2")
			release()
			run := <-second
			r.waitStatus(first.ID, store.StatusSucceeded)
			r.waitStatus(run.ID, store.StatusSucceeded)
			if n := st.claimed.Load(); n != 0 {
				t.Errorf("%d runs were claimed from the store; want 0: the waiting accept was handed the freed worker", n)
			}
		})
	}
}

// When every worker is held (a stalled downstream), an accept waits HandoffWait, then queues
// its run; the accepts after it queue at once, without waiting out the same stall, until a
// worker frees up. The queued runs run in arrival order once the workers free up.
func TestAcceptsQueueWithoutWaitingWhileEveryWorkerIsStalled(t *testing.T) {
	const wait = 300 * time.Millisecond
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			st := &claimCounter{testStore: b.open(t, nil)}
			r, held, release, bodies := holdTheOnlyWorker(t, st, wait)
			defer r.stop()
			start := time.Now()
			waited, _, err := r.accept("call", "L-1", "")
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < wait {
				t.Errorf("the first accept to meet the stall returned after %v; want it to wait %v for a worker", took, wait)
			}
			var queued []*store.Run
			for i := range 5 {
				start := time.Now()
				run, _, err := r.accept("call", "L-"+string(rune('2'+i)), "")
				if err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took >= wait {
					t.Errorf("accept %d during the stall took %v; want it queued at once", i, took)
				}
				queued = append(queued, run)
			}
			for _, run := range append([]*store.Run{waited}, queued...) {
				if got, err := st.GetRun(context.Background(), run.ID); err != nil || got.Status != store.StatusQueued {
					t.Fatalf("run %s during the stall: %+v, %v; want it queued in the store", run.ID, got, err)
				}
			}
			release()
			r.waitStatus(held.ID, store.StatusSucceeded)
			for _, run := range append([]*store.Run{waited}, queued...) {
				r.waitStatus(run.ID, store.StatusSucceeded)
			}
			want := []string{`{"loan":"L-0"}`, `{"loan":"L-1"}`}
			for i := range 5 {
				want = append(want, `{"loan":"L-`+string(rune('2'+i))+`"}`)
			}
			if got := bodies(); !slices.Equal(got, want) {
				t.Errorf("the downstream was called with %v; want the runs in arrival order, %v", got, want)
			}
			if n := st.claimed.Load(); n != 6 {
				t.Errorf("%d runs were claimed from the store; want the 6 queued during the stall", n)
			}
		})
	}
}

// Stop releases the accepts waiting for a worker: they store nothing and say so.
func TestStopReleasesAcceptsWaitingForAWorker(t *testing.T) {
	st := backends[0].open(t, nil)
	r, _, _, _ := holdTheOnlyWorker(t, st, time.Minute)
	errc := make(chan error)
	var waiter *store.Run
	go func() {
		run, _, err := r.accept("call", "L-2", "")
		waiter = run
		errc <- err
	}()
	waitUntil(t, "the accept to wait for a worker", func() bool { return r.waiting() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = r.d.Stop(ctx) // the held run is interrupted at the end of the grace period
	select {
	case err := <-errc:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("the waiting accept returned %v; want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting accept was not released by Stop")
	}
	if _, err := st.GetRun(context.Background(), waiter.ID); err == nil {
		t.Errorf("the accept released by Stop stored its run")
	}
}

// Runs due in the store get a freed worker before the accepts waiting for one, but an
// accept that arrives while they wait waits behind them too, instead of queueing at once:
// a sender that posts as fast as it is answered must be slowed to the workers' pace, not
// fill the queue until it gets 503s (with 20 ms waits skipped whenever the store had a
// backlog, 256 connections did that to 64 workers in the bench's scenario 4).
func TestAnAcceptWaitsBehindTheStoresBacklog(t *testing.T) {
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			st := &claimCounter{testStore: b.open(t, nil)}
			r, held, release, bodies := holdTheOnlyWorker(t, st, time.Minute)
			defer r.stop()
			stored := r.backlog(st, "L-1")
			accepted := r.acceptBehind("L-2")
			release()
			run := <-accepted
			for _, id := range []string{held.ID, stored[0].ID, run.ID} {
				r.waitStatus(id, store.StatusSucceeded)
			}
			want := []string{`{"loan":"L-0"}`, `{"loan":"L-1"}`, `{"loan":"L-2"}`}
			if got := bodies(); !slices.Equal(got, want) {
				t.Errorf("the downstream was called with %v; want the stored run before the waiting accept, %v", got, want)
			}
			if n := st.claimed.Load(); n != 1 {
				t.Errorf("%d runs were claimed from the store; want 1, the stored run: the waiting accept is handed its worker", n)
			}
		})
	}
}

// While the store holds a backlog, freed workers take turns between it and the accepts
// waiting for one, the backlog first: neither starves the other, and the waiting accepts
// do not all wait out HandoffWait and queue behind the backlog, each then costing a claim.
func TestFreedWorkersTakeTurnsBetweenTheBacklogAndTheWaitingAccepts(t *testing.T) {
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			st := &claimCounter{testStore: b.open(t, nil)}
			r, held, release, bodies := holdTheOnlyWorker(t, st, time.Minute)
			defer r.stop()
			stored := r.backlog(st, "L-1", "L-2")
			accepted := r.acceptBehind("L-3")
			release()
			run := <-accepted
			for _, id := range []string{held.ID, stored[0].ID, stored[1].ID, run.ID} {
				r.waitStatus(id, store.StatusSucceeded)
			}
			want := []string{`{"loan":"L-0"}`, `{"loan":"L-1"}`, `{"loan":"L-3"}`, `{"loan":"L-2"}`}
			if got := bodies(); !slices.Equal(got, want) {
				t.Errorf("the downstream was called with %v; want the backlog and the waiting accept in turns, %v", got, want)
			}
			if n := st.claimed.Load(); n != 2 {
				t.Errorf("%d runs were claimed from the store; want 2, the stored runs: the waiting accept is handed its worker", n)
			}
		})
	}
}

// An accept waits on past HandoffWait while workers keep freeing up for the accepts ahead
// of it, up to handoffWaitsAtMost HandoffWaits: a line longer than the pool serves in one
// HandoffWait is slowed to the pool's pace, not queued in the store.
func TestAnAcceptWaitsOnWhileThePoolMakesProgress(t *testing.T) {
	const call, wait = 100 * time.Millisecond, 250 * time.Millisecond
	var calls atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(call)
	}))
	defer slow.Close()
	s := mustSaga(t, "name: call\nsteps:\n  - name: call\n    http: {url: \""+slow.URL+"\", json: {loan: \"${ body.loan }\"}}\n")
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			st := &claimCounter{testStore: b.open(t, nil)}
			r := startRig(t, Options{Store: st, Workers: 1, QueueSize: 100, HandoffWait: wait}, st, nil, s)
			defer r.stop()
			r.settle()
			first, _, err := r.accept("call", "L-0", "")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			// The fourth waits ~4 calls (400 ms), past one HandoffWait, while a call ends in
			// every HandoffWait.
			var answered []<-chan *store.Run
			for _, loan := range []string{"L-1", "L-2", "L-3", "L-4"} {
				answered = append(answered, r.acceptBehind(loan))
			}
			runs := []*store.Run{first}
			for _, a := range answered {
				runs = append(runs, <-a)
			}
			if took := time.Since(start); took < wait {
				t.Fatalf("the accepts were answered within %v; want the last to wait past HandoffWait (%v)", took, wait)
			}
			for _, run := range runs {
				r.waitStatus(run.ID, store.StatusSucceeded)
			}
			if n := st.claimed.Load(); n != 0 {
				t.Errorf("%d runs were claimed from the store; want 0: each waiting accept is handed a worker", n)
			}
		})
	}
}

// The accepts waiting for a worker are bounded in number (maxWaitersPerWorker per worker)
// and in the request bodies they hold in memory (maxWaitingBodies); past either bound an
// accept queues its run in the store at once.
func TestTheAcceptsWaitingForAWorkerAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    int
		waiting int
	}{
		{"by number", 100, maxWaitersPerWorker},
		{"by the bodies they hold", 2 << 20, maxWaitingBodies / (2 << 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := backends[0].open(t, nil)
			r, _, release, _ := holdTheOnlyWorker(t, st, time.Minute)
			defer r.stop()
			body := strings.Repeat("x", tc.body)
			var wg sync.WaitGroup
			for range tc.waiting {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, _, err := r.accept("call", body, ""); err != nil {
						t.Error(err)
					}
				}()
			}
			waitUntil(t, "the accepts to wait for a worker", func() bool { return r.waiting() == tc.waiting })
			start := time.Now()
			run, _, err := r.accept("call", body, "")
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("the accept past the bound took %v; want it queued at once", took)
			}
			if got, err := st.GetRun(context.Background(), run.ID); err != nil || got.Status != store.StatusQueued {
				t.Errorf("the accept past the bound: %+v, %v; want its run queued in the store", got, err)
			}
			if n := r.waiting(); n != tc.waiting {
				t.Errorf("%d accepts wait; want %d", n, tc.waiting)
			}
			release()
			wg.Wait()
			r.waitStatus(run.ID, store.StatusSucceeded)
		})
	}
}
