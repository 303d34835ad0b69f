package dispatch

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// A compensation's retry wait frees the worker like a forward step's: the run is stored
// waiting in its compensating phase, another run takes the only worker meanwhile, and
// the run woken at its time retries the compensation — not the forward steps, though the
// failed one would now succeed — and ends compensated.
func TestACompensationsRetryWaitFreesTheWorkerAndResumesTheCompensation(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	callFails := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls[r.URL.Path]++
		n, fail := calls[r.URL.Path], callFails
		mu.Unlock()
		switch {
		case r.URL.Path == "/call" && fail:
			http.Error(w, "no", http.StatusInternalServerError)
		case r.URL.Path == "/undo" && n == 1:
			w.Header().Set("Retry-After", "10")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	count := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range calls {
			out[k] = v
		}
		return out
	}
	undo := mustSaga(t, `name: undo
steps:
  - name: reserve
    http: {method: POST, url: "`+srv.URL+`/reserve"}
    compensate: {http: {method: DELETE, url: "`+srv.URL+`/undo"}}
    retry: {attempts: 3, backoff: 1s}
  - {name: call, http: {method: POST, url: "`+srv.URL+`/call"}}
`)
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			mu.Lock()
			calls, callFails = map[string]int{}, true
			mu.Unlock()
			clock := newFakeClock()
			st := b.open(t, clock)
			r := newRig(t, st, clock, noSleep{clock}, 1, 10, undo, mustSaga(t, pureSaga))
			defer r.stop()

			run, _, err := r.accept("undo", "L-1", "")
			if err != nil {
				t.Fatal(err)
			}
			waiting := r.waitStatus(run.ID, store.StatusWaiting)
			var cp saga.State
			if err := json.Unmarshal(waiting.State, &cp); err != nil {
				t.Fatal(err)
			}
			if cp.Phase != saga.PhaseCompensating || cp.StepAttempts != 1 || !waiting.WakeAt.Equal(clock.Now().Add(10*time.Second)) {
				t.Fatalf("stored waiting in phase %s after %d tries until %v; want compensating, 1 try, the 10s asked",
					cp.Phase, cp.StepAttempts, waiting.WakeAt.Sub(clock.Now()))
			}
			if n := executingAfterSettling(r.d); n != 0 {
				t.Fatalf("%d runs hold a worker through a compensation's wait", n)
			}
			other, _, err := r.accept("pure", "L-2", "")
			if err != nil {
				t.Fatal(err)
			}
			r.waitStatus(other.ID, store.StatusSucceeded) // the only worker was free for it

			mu.Lock()
			callFails = false // a forward pass run again would now succeed
			mu.Unlock()
			clock.Advance(10 * time.Second)
			done := r.waitStatus(run.ID, store.StatusCompensated)
			if got := count(); got["/reserve"] != 1 || got["/call"] != 1 || got["/undo"] != 2 {
				t.Errorf("calls %v; want the forward steps once each and the compensation twice", got)
			}
			var res struct{ Compensations []saga.StepRecord }
			if err := json.Unmarshal(done.Result, &res); err != nil || len(res.Compensations) != 1 || res.Compensations[0].Attempts != 2 {
				t.Errorf("result compensations %+v (%v); want one record of two tries", res.Compensations, err)
			}
		})
	}
}

// The store supersedes a waiting debounced run when a newer event with its key arrives,
// but only one that never started: a run suspended in its compensation's retry wait
// finishes its undo.
func TestADebouncedRunsCompensationIsNotSuperseded(t *testing.T) {
	var undo atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/call":
			http.Error(w, "no", http.StatusInternalServerError)
		case "/undo":
			if undo.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, "busy", http.StatusServiceUnavailable)
			}
		}
	}))
	defer srv.Close()
	s := mustSaga(t, `name: deb
debounce: {key: "${ body.loan }", wait: 1s}
steps:
  - name: reserve
    http: {method: POST, url: "`+srv.URL+`/reserve"}
    compensate: {http: {method: POST, url: "`+srv.URL+`/undo"}}
    retry: {attempts: 3, backoff: 1s}
  - {name: call, http: {method: POST, url: "`+srv.URL+`/call"}}
`)
	for _, b := range backends {
		t.Run("on "+b.name, func(t *testing.T) {
			undo.Store(0)
			clock := newFakeClock()
			st := b.open(t, clock)
			r := newRig(t, st, clock, clock, 1, 10, s) // the engine's fake clock sleeps at once
			defer r.stop()
			first, _, err := r.accept("deb", "L-1", "")
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Second)
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				// Past the compensation's first try: waiting in the store, or done.
				got, err := st.GetRun(context.Background(), first.ID)
				if err == nil && undo.Load() > 0 && (got.Status == store.StatusWaiting || got.Status.Final()) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the compensation never ran: %v %v", got, err)
				}
			}
			if _, _, err := r.accept("deb", "L-1", ""); err != nil { // the next event for the key
				t.Fatal(err)
			}
			// The compensation waits out its Retry-After in the store, not superseded: a run
			// that has started is never superseded.
			if got, err := st.GetRun(context.Background(), first.ID); err != nil || got.Status.Final() && got.Status != store.StatusCompensated {
				t.Fatalf("the next event for the key left the first run %v (%v)", got.Status, err)
			}
			clock.Advance(2 * time.Second)
			done := r.waitStatus(first.ID, store.StatusCompensated)
			var res struct{ Compensations []saga.StepRecord }
			if err := json.Unmarshal(done.Result, &res); err != nil || len(res.Compensations) != 1 || res.Compensations[0].Attempts != 2 || done.Attempt != 1 {
				t.Errorf("compensations %+v (%v) over %d attempts; want one record of two tries (a wait, then success) in one", res.Compensations, err, done.Attempt)
			}
		})
	}
}
