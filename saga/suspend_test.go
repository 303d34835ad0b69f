package saga

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store/memory"
)

// throttled is a downstream that answers 503 Retry-After: 30 to its first `busy` calls and
// 200 after.
func throttled(t *testing.T, busy int32) (string, *atomic.Int32) {
	t.Helper()
	calls := new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= busy {
			w.Header().Set("Retry-After", "30")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

// A Retry-After (or backoff) wait of a run that may suspend ends the call at once with
// StatusWaiting: the worker is free, and the checkpoint holds the wait for the store.
func TestARetryWaitSuspendsTheRunInsteadOfSleeping(t *testing.T) {
	url, calls := throttled(t, 1)
	s := mustParse(t, "throttled", `
name: throttled
steps:
  - {name: first, set: {a: 1}}
  - name: call
    http: {url: "`+url+`"}
    retry: {attempts: 3, backoff: 1s, max_backoff: 1m}
  - {name: after, set: {attempt: "${ run.attempt }", tries: "${ steps.call.attempts }"}}
`)
	var cp recordingCheckpointer
	e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
	inv := invocation(s, nil)
	inv.Suspend = true
	start := clock.Now()
	res := e.Run(context.Background(), inv)
	if res.Status != StatusWaiting || !res.WakeAt.Equal(start.Add(30*time.Second)) {
		t.Fatalf("status %q wake %v, want waiting until %v", res.Status, res.WakeAt, start.Add(30*time.Second))
	}
	if len(clock.Sleeps()) != 0 || calls.Load() != 1 {
		t.Fatalf("slept %v after %d calls: a suspending run must not sleep", clock.Sleeps(), calls.Load())
	}
	st := cp.states[len(cp.states)-1]
	if st.Next != 1 || st.StepAttempts != 1 || !st.WaitUntil.Equal(res.WakeAt) {
		t.Fatalf("last checkpoint next=%d tries=%d wait=%v; want the wait of step 1 after one try", st.Next, st.StepAttempts, st.WaitUntil)
	}
	if st.Step != "call" || st.StepAction != "http" {
		t.Errorf("the checkpoint names %q (%q) as the action waited for; want call (http), for the admin API", st.Step, st.StepAction)
	}

	t.Run("woken early it suspends again without calling", func(t *testing.T) {
		n := len(cp.states)
		again := e.Resume(context.Background(), inv, st)
		if again.Status != StatusWaiting || !again.WakeAt.Equal(st.WaitUntil) || calls.Load() != 1 || len(clock.Sleeps()) != 0 {
			t.Fatalf("status %q wake %v after %d calls", again.Status, again.WakeAt, calls.Load())
		}
		if len(cp.states) != n+1 || !cp.states[n].WaitUntil.Equal(st.WaitUntil) {
			t.Fatalf("the wait was not checkpointed again for the store: %d checkpoints", len(cp.states)-n)
		}
		if cp.states[n].Step != "call" || cp.states[n].StepAction != "http" {
			t.Errorf("the checkpoint written again names %q (%q); want call (http) still", cp.states[n].Step, cp.states[n].StepAction)
		}
	})

	t.Run("woken at its time it goes on with the tries it made and the same attempt", func(t *testing.T) {
		clock.mu.Lock()
		clock.now = st.WaitUntil
		clock.mu.Unlock()
		inv := *inv
		inv.Attempt = 1 // the store counts a wake-up as the same attempt
		done := e.Resume(context.Background(), &inv, st)
		if done.Status != StatusSucceeded || calls.Load() != 2 {
			t.Fatalf("status %q (%s) after %d calls", done.Status, done.Error, calls.Load())
		}
		if done.Vars["tries"] != 2 || done.Vars["attempt"] != 1 {
			t.Errorf("vars %v: the step's tries go on (2) and run.attempt stays 1", done.Vars)
		}
	})
}

func TestWhichWaitsSuspend(t *testing.T) {
	url, _ := throttled(t, 1<<30)
	s := mustParse(t, "waits", `
name: waits
steps:
  - name: call
    http: {url: "`+url+`"}
    retry: {attempts: 2, backoff: 1s}
`)
	for _, tc := range []struct {
		name       string
		suspend    bool
		sleepUntil time.Duration // from the start; 0: none
		checkpoint bool
		wantStatus string
		wantSleeps []time.Duration
	}{
		{"a run that may not suspend sleeps", false, 0, true, StatusFailed, []time.Duration{30 * time.Second}},
		{"a run that may suspend does so", true, 0, true, StatusWaiting, nil},
		{"a wait that ends before SleepUntil is slept in place", true, time.Minute, true, StatusFailed, []time.Duration{30 * time.Second}},
		{"a wait that ends at SleepUntil suspends", true, 30 * time.Second, true, StatusWaiting, nil},
		{"without a checkpointer nothing would wake the run: it sleeps", true, 0, false, StatusFailed, []time.Duration{30 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cp recordingCheckpointer
			e, clock, _ := testEngine(t, func(o *EngineOptions) {
				if tc.checkpoint {
					o.Checkpointer = &cp
				}
			})
			inv := invocation(s, nil)
			inv.Suspend = tc.suspend
			if tc.sleepUntil > 0 {
				inv.SleepUntil = clock.Now().Add(tc.sleepUntil)
			}
			res := e.Run(context.Background(), inv)
			if res.Status != tc.wantStatus || !reflect.DeepEqual(clock.Sleeps(), tc.wantSleeps) {
				t.Fatalf("status %q sleeps %v; want %q and %v", res.Status, clock.Sleeps(), tc.wantStatus, tc.wantSleeps)
			}
		})
	}
}

// A context cancelled with ErrInterrupted (shutdown, a lost lease) gives the run up: the
// step in flight is abandoned, nothing is compensated, on_failure does not run, and the
// caller is told StatusInterrupted so it records nothing.
func TestAnInterruptedRunIsGivenUpNotFailed(t *testing.T) {
	var undone, alerted atomic.Int32
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/undo":
			undone.Add(1)
		case "/alert":
			alerted.Add(1)
		case "/hold":
			entered <- struct{}{}
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	s := mustParse(t, "held", `
name: held
steps:
  - name: made
    kv: {op: put, key: k, value: 1}
    compensate: {http: {url: "`+srv.URL+`/undo"}}
  - name: held
    http: {url: "`+srv.URL+`/hold"}
    continue_on_error: true
  - {name: after, set: {x: 1}}
on_failure:
  http: {url: "`+srv.URL+`/alert"}
`)
	var cp recordingCheckpointer
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp; o.KV = memory.NewKV(nil) })
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { <-entered; cancel(ErrInterrupted) }()
	res := e.Run(ctx, invocation(s, nil))
	if res.Status != StatusInterrupted {
		t.Fatalf("status %q (%s), want interrupted", res.Status, res.Error)
	}
	if undone.Load() != 0 || alerted.Load() != 0 {
		t.Errorf("%d compensations and %d on_failure calls for an interrupted run, want none", undone.Load(), alerted.Load())
	}
	if last := cp.states[len(cp.states)-1]; last.Next != 1 {
		t.Errorf("last checkpoint resumes at step %d, want 1 (the step in flight runs again)", last.Next)
	}

	t.Run("another cancellation still fails and compensates", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-entered; cancel() }()
		s := mustParse(t, "held2", `
name: held2
steps:
  - name: made
    kv: {op: put, key: k, value: 1}
    compensate: {http: {url: "`+srv.URL+`/undo"}}
  - name: held
    http: {url: "`+srv.URL+`/hold"}
`)
		res := e.Run(ctx, invocation(s, nil))
		if res.Status != StatusCompensated || undone.Load() != 1 {
			t.Fatalf("status %q with %d compensations, want compensated once", res.Status, undone.Load())
		}
	})
}

// A timeout covers the whole run, and a step's timeout all its tries, however often the
// run suspends: a run woken from a wait keeps the deadlines it had, so a wait that would
// end after them fails the step instead of suspending again.
func TestARunWokenFromAWaitKeepsItsDeadlines(t *testing.T) {
	url, _ := throttled(t, 1<<30) // always Retry-After: 30
	for _, tc := range []struct {
		name, src, want string
		deadline        func(st *State, dl time.Time)
	}{
		{"the saga's timeout", `
name: timed
timeout: 1h
steps:
  - {name: call, http: {url: "` + url + `"}, retry: {attempts: 5, backoff: 1s}}
`, "the run's deadline", func(st *State, dl time.Time) { st.SagaDeadline = dl }},
		{"the step's timeout", `
name: timed
steps:
  - {name: call, http: {url: "` + url + `", timeout: 5s}, timeout: 1h, retry: {attempts: 5, backoff: 1s}}
`, "the step's timeout (1h0m0s)", func(st *State, dl time.Time) { st.StepDeadline = dl }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, "timed", tc.src)
			var cp recordingCheckpointer
			e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
			inv := invocation(s, nil)
			inv.Suspend = true
			if res := e.Run(context.Background(), inv); res.Status != StatusWaiting {
				t.Fatalf("first execution: %q (%s)", res.Status, res.Error)
			}
			st := *cp.states[len(cp.states)-1]
			if st.SagaDeadline.IsZero() && st.StepDeadline.IsZero() {
				t.Fatal("the suspension's checkpoint holds no deadline")
			}
			// Most of the hour has passed: 10s are left, less than the next 30s wait.
			tc.deadline(&st, time.Now().Add(10*time.Second))
			clock.mu.Lock()
			clock.now = st.WaitUntil
			clock.mu.Unlock()
			res := e.Resume(context.Background(), inv, &st)
			if res.Status != StatusFailed || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("woken run: %q (%s); want it failed at %s, not suspended with a fresh timeout", res.Status, res.Error, tc.want)
			}
		})
	}
}
