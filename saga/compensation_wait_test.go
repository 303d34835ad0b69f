package saga

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// byPath is a downstream that answers each path from a script: the n-th call to a path
// gets the n-th answer listed for it (a status; 503 and 429 carry Retry-After: 10), and 200
// once the list is used up. It counts the calls per path.
type byPath struct {
	mu     sync.Mutex
	script map[string][]int
	calls  map[string]int
}

func newByPath(t *testing.T, script map[string][]int) (*httptest.Server, *byPath) {
	t.Helper()
	d := &byPath{script: script, calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		n := d.calls[r.URL.Path]
		d.calls[r.URL.Path]++
		code := http.StatusOK
		if answers := d.script[r.URL.Path]; n < len(answers) {
			code = answers[n]
		}
		d.mu.Unlock()
		if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "10")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv, d
}

// Calls returns the counts so far and starts counting afresh.
func (d *byPath) Calls() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.calls
	d.calls = map[string]int{}
	return out
}

// A compensation's retry wait suspends the run as a forward step's does: the call ends at
// once with StatusWaiting, the checkpoint holds the compensating phase, the compensation
// and its tries, and the run woken at its time retries that compensation — never a
// forward step — then finishes the cleanup.
func TestACompensationRetryWaitSuspendsTheRun(t *testing.T) {
	tests := []struct {
		name     string
		saga     string
		script   map[string][]int
		wait     time.Duration
		undo     int      // the checkpoint's Undo: the compensation that waits
		doneBy   []string // compensations finished before the wait
		resumed  map[string]int
		wantComp []string
	}{
		{"a Retry-After answer to the only compensation", `
name: undo
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.base }/reserve"}
    compensate: {http: {method: DELETE, url: "${ settings.base }/undo/reserve"}}
    retry: {attempts: 3, backoff: 1s, max_backoff: 1m}
  - {name: call, http: {method: POST, url: "${ settings.base }/call"}}
on_failure: {http: {method: POST, url: "${ settings.base }/alert"}}
`, map[string][]int{"/call": {500}, "/undo/reserve": {503}}, 10 * time.Second, 0, nil,
			map[string]int{"/undo/reserve": 1, "/alert": 1}, []string{"reserve:succeeded"}},
		{"a backoff wait in the second compensation, after the first finished", undoSaga,
			map[string][]int{"/call": {500}, "/undo/reserve": {500}}, time.Second, 0, []string{"record:succeeded"},
			map[string]int{"/undo/reserve": 1, "/alert": 1}, []string{"record:succeeded", "reserve:succeeded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, "undo", tc.saga)
			srv, down := newByPath(t, tc.script)
			var cp recordingCheckpointer
			e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
			inv := undoInvocation(s, srv.URL)
			inv.Suspend = true
			start := clock.Now()

			res := e.Run(context.Background(), inv)
			if res.Status != StatusWaiting || !res.WakeAt.Equal(start.Add(tc.wait)) {
				t.Fatalf("status %q (%s) wake %v; want waiting until %v", res.Status, res.Error, res.WakeAt, start.Add(tc.wait))
			}
			if sleeps := clock.Sleeps(); len(sleeps) != 0 {
				t.Fatalf("slept %v: a compensation's wait must not hold the worker", sleeps)
			}
			if calls := down.Calls(); calls["/undo/reserve"] != 1 || calls["/alert"] != 0 {
				t.Fatalf("calls before the wait %v: one try of the compensation, on_failure not yet", calls)
			}
			st := roundTrip(t, cp.states[len(cp.states)-1])
			if st.Phase != PhaseCompensating || st.Undo != tc.undo || st.StepAttempts != 1 || !st.WaitUntil.Equal(res.WakeAt) ||
				!slices.Equal(names(st.Compensations), tc.doneBy) || st.CleanupDeadline.IsZero() {
				t.Fatalf("the wait's checkpoint: phase %s undo %d tries %d wait %v done %v cleanup deadline %v",
					st.Phase, st.Undo, st.StepAttempts, st.WaitUntil, names(st.Compensations), st.CleanupDeadline)
			}

			// Woken early, it suspends again until the same time without a call.
			n := len(cp.states)
			again := e.Resume(context.Background(), inv, st)
			if again.Status != StatusWaiting || !again.WakeAt.Equal(st.WaitUntil) || len(cp.states) != n+1 {
				t.Fatalf("woken early: %q wake %v, %d checkpoints", again.Status, again.WakeAt, len(cp.states)-n)
			}
			if calls := down.Calls(); len(calls) != 0 {
				t.Fatalf("woken early it called %v", calls)
			}

			// Woken at its time, with the failed step now able to succeed: only the
			// compensation's next try and on_failure run.
			down.mu.Lock()
			down.script = map[string][]int{}
			down.mu.Unlock()
			clock.mu.Lock()
			clock.now = st.WaitUntil
			clock.mu.Unlock()
			woken := *inv
			woken.Attempt = 1
			done := e.Resume(context.Background(), &woken, roundTrip(t, cp.states[n]))
			if done.Status != StatusCompensated || done.FailedStep != "call" {
				t.Fatalf("woken run: %q failed step %q (%s), want compensated after call failed", done.Status, done.FailedStep, done.Error)
			}
			if calls := down.Calls(); !maps.Equal(calls, tc.resumed) {
				t.Errorf("woken run called %v, want %v: no forward step again", calls, tc.resumed)
			}
			if got := names(done.Compensations); !reflect.DeepEqual(got, tc.wantComp) {
				t.Errorf("compensations %v, want %v: each once in history", got, tc.wantComp)
			}
			if last := done.Compensations[len(done.Compensations)-1]; last.Attempts != 2 {
				t.Errorf("the woken compensation's record counts %d tries, want 2", last.Attempts)
			}
			if done.OnFailure == nil || done.OnFailure.Status != StatusSucceeded {
				t.Errorf("on_failure %+v", done.OnFailure)
			}
		})
	}
}

// CleanupTimeout bounds the cleanup across its suspensions: a run woken from a
// compensation's wait keeps the cleanup's deadline, so a wait that would end after it is
// not made. Time the run spent due but not running (the process was down) is given back,
// and a restart after a crash starts the cleanup's timeout afresh.
func TestACleanupWokenFromAWaitKeepsItsDeadline(t *testing.T) {
	s := mustParse(t, "timed", `
name: timed
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.base }/reserve"}
    compensate: {http: {method: DELETE, url: "${ settings.base }/undo"}}
    retry: {attempts: 5, backoff: 1s}
  - {name: call, http: {method: POST, url: "${ settings.base }/call"}}
`)
	tests := []struct {
		name     string
		deadline time.Duration // the checkpoint's cleanup deadline, from now (real time)
		late     time.Duration // how long after its wake time the run is resumed
		crash    bool          // resumed after a crash mid-cleanup, not woken from the wait
		undo     []int         // the compensation's answers after the resume
		status   string
		error    string // in the compensation's record
	}{
		{"a wait that would end after the cleanup's deadline is not made", 5 * time.Second, 0, false,
			[]int{503}, StatusCompensationFailed, "after the cleanup deadline"},
		{"a deadline that passed while the run waited ends the cleanup", -time.Second, 0, false,
			nil, StatusCompensationFailed, "compensation timed out after 1m0s"},
		{"time the run was due but not running does not count", -time.Minute, 5 * time.Minute, false,
			nil, StatusCompensated, ""},
		{"a restart after a crash starts the cleanup's timeout afresh", -time.Minute, 0, true,
			nil, StatusCompensated, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, down := newByPath(t, map[string][]int{"/call": {500}, "/undo": {503}})
			var cp recordingCheckpointer
			e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp; o.CleanupTimeout = time.Minute })
			inv := undoInvocation(s, srv.URL)
			inv.Suspend = true
			if res := e.Run(context.Background(), inv); res.Status != StatusWaiting {
				t.Fatalf("first execution: %q (%s), want waiting in the compensation's Retry-After", res.Status, res.Error)
			}
			st := roundTrip(t, cp.states[len(cp.states)-1])
			if left := time.Until(st.CleanupDeadline); left < 55*time.Second || left > time.Minute {
				t.Fatalf("cleanup deadline %v from now, want the 1m CleanupTimeout from the cleanup's start", left)
			}
			st.CleanupDeadline = time.Now().Add(tc.deadline)
			clock.mu.Lock()
			clock.now = st.WaitUntil.Add(tc.late)
			clock.mu.Unlock()
			if tc.crash {
				st.StepAttempts, st.WaitUntil = 0, time.Time{} // what a crash mid-compensation leaves
			}
			down.mu.Lock()
			down.script = map[string][]int{"/undo": tc.undo}
			down.mu.Unlock()
			down.Calls()

			res := e.Resume(context.Background(), inv, st)
			if res.Status != tc.status {
				t.Fatalf("status %q (%s), want %s", res.Status, res.Error, tc.status)
			}
			comp := res.Compensations[0]
			if !strings.Contains(comp.Error, tc.error) {
				t.Errorf("compensation error %q, want it to say %q", comp.Error, tc.error)
			}
			if calls := down.Calls(); calls["/reserve"]+calls["/call"] != 0 {
				t.Errorf("the resumed cleanup called forward steps: %v", calls)
			}
		})
	}
}
