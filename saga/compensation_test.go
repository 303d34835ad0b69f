package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// undoDownstream counts the calls a saga makes per path. /call fails while failing is set;
// /undo/<step> fails for the steps in failUndo; a hook on a path runs when it is called,
// before it answers.
type undoDownstream struct {
	mu       sync.Mutex
	calls    map[string]int
	failing  bool
	failUndo map[string]bool
	hooks    map[string]func()
}

func newUndoDownstream(t *testing.T) (*httptest.Server, *undoDownstream) {
	d := &undoDownstream{calls: map[string]int{}, failing: true, failUndo: map[string]bool{}, hooks: map[string]func(){}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.calls[r.URL.Path]++
		hook := d.hooks[r.URL.Path]
		fail := (r.URL.Path == "/call" && d.failing) || d.failUndo[r.URL.Path]
		d.mu.Unlock()
		if hook != nil {
			hook()
		}
		if fail {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, d
}

// Calls returns the counts so far and starts counting afresh.
func (d *undoDownstream) Calls() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.calls
	d.calls = map[string]int{}
	return out
}

func (d *undoDownstream) set(f func(d *undoDownstream)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// undoSaga reserves and records, each with a compensation, then calls; on_failure alerts.
const undoSaga = `
name: undo
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.base }/reserve"}
    compensate: {http: {method: DELETE, url: "${ settings.base }/undo/reserve"}}
    retry: {attempts: 2, backoff: 1s}
  - name: record
    http: {method: POST, url: "${ settings.base }/record"}
    compensate: {http: {method: DELETE, url: "${ settings.base }/undo/record"}}
  - name: call
    http: {method: POST, url: "${ settings.base }/call"}
on_failure:
  http: {method: POST, url: "${ settings.base }/alert", json: {step: "${ error.step }"}}
`

func undoInvocation(s *Saga, base string) *Invocation {
	inv := invocation(s, map[string]any{})
	inv.Settings = map[string]any{"base": base}
	return inv
}

// roundTrip is st as a store gives it back: through its JSON.
func roundTrip(t *testing.T, st *State) *State {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestACrashDuringCleanupResumesTheCleanup runs a saga whose last step fails, notes which
// checkpoint was the latest when each cleanup call began (what a kill -9 at that moment
// leaves in the store), and resumes from it with the failing step now able to succeed.
func TestACrashDuringCleanupResumesTheCleanup(t *testing.T) {
	s := mustParse(t, "undo", undoSaga)
	tests := []struct {
		name      string
		crashAt   string         // the cleanup call in flight at the crash
		failUndo  string         // a compensation that fails after the restart
		wantCalls map[string]int // calls the resumed run makes
		wantComps []string
		status    string
	}{
		{"a crash during the first compensation runs both compensations and on_failure, no step",
			"/undo/record", "", map[string]int{"/undo/record": 1, "/undo/reserve": 1, "/alert": 1},
			[]string{"record:succeeded", "reserve:succeeded"}, StatusCompensated},
		{"a crash during the second compensation runs only that one again and on_failure",
			"/undo/reserve", "", map[string]int{"/undo/reserve": 1, "/alert": 1},
			[]string{"record:succeeded", "reserve:succeeded"}, StatusCompensated},
		{"a crash during on_failure runs only on_failure again",
			"/alert", "", map[string]int{"/alert": 1},
			[]string{"record:succeeded", "reserve:succeeded"}, StatusCompensated},
		{"a compensation that fails after the restart ends the run compensation_failed",
			"/undo/reserve", "/undo/reserve", map[string]int{"/undo/reserve": 2, "/alert": 1},
			[]string{"record:succeeded", "reserve:failed"}, StatusCompensationFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, down := newUndoDownstream(t)
			var cp recordingCheckpointer
			e, _, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
			crashState := -1
			down.set(func(d *undoDownstream) {
				d.hooks[tc.crashAt] = func() {
					cp.mu.Lock()
					defer cp.mu.Unlock()
					if crashState < 0 {
						crashState = len(cp.states) - 1
					}
				}
			})
			first := e.Run(context.Background(), undoInvocation(s, srv.URL))
			if first.Status != StatusCompensated || crashState < 0 {
				t.Fatalf("first attempt: %s (%s); crash point reached: %v", first.Status, first.Error, crashState >= 0)
			}
			down.Calls()
			down.set(func(d *undoDownstream) {
				d.failing = false // the failed step would now succeed if it ran again
				d.hooks = map[string]func(){}
				if tc.failUndo != "" {
					d.failUndo[tc.failUndo] = true
				}
			})

			res := e.Resume(context.Background(), undoInvocation(s, srv.URL), roundTrip(t, cp.states[crashState]))
			if res.Status != tc.status || res.FailedStep != "call" {
				t.Errorf("status %q failed step %q (%s), want %s after call failed", res.Status, res.FailedStep, res.Error, tc.status)
			}
			if got := down.Calls(); !maps.Equal(got, tc.wantCalls) {
				t.Errorf("the resumed run called %v, want %v (no forward step again)", got, tc.wantCalls)
			}
			if got := names(res.Compensations); !reflect.DeepEqual(got, tc.wantComps) {
				t.Errorf("compensations %v, want %v: each once in history", got, tc.wantComps)
			}
			wantSteps := []string{"reserve:compensated", "record:compensated", "call:failed"}
			if tc.failUndo == "/undo/reserve" {
				wantSteps[0] = "reserve:succeeded"
			}
			if got := names(res.Steps); !reflect.DeepEqual(got, wantSteps) {
				t.Errorf("steps %v, want %v", got, wantSteps)
			}
			if res.OnFailure == nil || res.OnFailure.Status != StatusSucceeded {
				t.Errorf("on_failure %+v", res.OnFailure)
			}
		})
	}
}

func TestCheckpointsRecordTheCleanupPhase(t *testing.T) {
	tests := []struct {
		name, saga string
		want       []string
	}{
		{"compensations are written down as they finish", strings.Replace(undoSaga, "name: undo", "name: cp", 1), []string{
			"forward next=1",
			"forward next=2",
			// Leaving the forward pass is written down before anything is undone.
			"compensating undo=1 done=[] failed=call",
			"compensating undo=0 done=[record:succeeded] failed=call",
			"on_failure undo=-1 done=[record:succeeded reserve:succeeded] failed=call",
		}},
		{"a failure with only on_failure left is written down as on_failure", `
name: cp
steps:
  - {name: note, kv: {op: put, key: k, value: 1}}
  - {name: call, http: {method: POST, url: "${ settings.base }/call"}}
on_failure: {http: {method: POST, url: "${ settings.base }/alert"}}
`, []string{"forward next=1", "on_failure undo=-1 done=[] failed=call"}},
		{"a cleanup without effects costs no write: repeating it is free", `
name: cp
steps:
  - {name: note, kv: {op: put, key: k, value: 1}, compensate: {log: {message: undone}}}
  - {name: call, http: {method: POST, url: "${ settings.base }/call"}}
on_failure: {log: {message: failed}}
`, []string{"forward next=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, "cp", tc.saga)
			srv, _ := newUndoDownstream(t)
			var cp recordingCheckpointer
			e, _, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
			if res := e.Run(context.Background(), undoInvocation(s, srv.URL)); res.Status == StatusSucceeded {
				t.Fatalf("%s: %s", res.Status, res.Error)
			}
			var got []string
			for _, st := range cp.states {
				line := fmt.Sprintf("%s next=%d", st.Phase, st.Next)
				if st.Phase != PhaseForward {
					line = fmt.Sprintf("%s undo=%d done=%v failed=%s", st.Phase, st.Undo, names(st.Compensations), st.Failure.Step)
				}
				got = append(got, line)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("checkpoints\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestARunIsCompensatedOnlyWhenEveryCompensationSucceeded(t *testing.T) {
	s := mustParse(t, "undo", undoSaga)
	tests := []struct {
		name      string
		failUndo  []string
		wantComps []string
		status    string
	}{
		{"every compensation succeeded", nil, []string{"record:succeeded", "reserve:succeeded"}, StatusCompensated},
		{"one compensation failed after its retries, and the next still ran", []string{"/undo/record"},
			[]string{"record:failed", "reserve:succeeded"}, StatusCompensationFailed},
		{"every compensation failed", []string{"/undo/record", "/undo/reserve"},
			[]string{"record:failed", "reserve:failed"}, StatusCompensationFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, down := newUndoDownstream(t)
			down.set(func(d *undoDownstream) {
				for _, p := range tc.failUndo {
					d.failUndo[p] = true
				}
			})
			e, _, _ := testEngine(t)
			res := e.Run(context.Background(), undoInvocation(s, srv.URL))
			if res.Status != tc.status {
				t.Errorf("status %q, want %q", res.Status, tc.status)
			}
			if got := names(res.Compensations); !reflect.DeepEqual(got, tc.wantComps) {
				t.Errorf("compensations %v, want %v", got, tc.wantComps)
			}
			if calls := down.Calls(); calls["/undo/reserve"] != 1+boolInt(slices.Contains(tc.failUndo, "/undo/reserve")) {
				t.Errorf("undo/reserve called %d times: a compensation retries with its step's policy", calls["/undo/reserve"])
			}
		})
	}
	t.Run("a run with nothing to compensate ends failed", func(t *testing.T) {
		s := mustParse(t, "bare", "name: bare\nsteps:\n  - {name: call, http: {method: POST, url: \"${ settings.base }/call\"}}\n")
		srv, _ := newUndoDownstream(t)
		e, _, _ := testEngine(t)
		if res := e.Run(context.Background(), undoInvocation(s, srv.URL)); res.Status != StatusFailed {
			t.Errorf("status %q", res.Status)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
