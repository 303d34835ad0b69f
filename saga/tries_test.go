package saga

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStepRecordKeepsEachTry: a retried step's record lists every try (status, start,
// duration, error, http status), not only the last, and a long retry keeps the first and
// the latest MaxTries-1, counting the rest.
func TestStepRecordKeepsEachTry(t *testing.T) {
	down := func(n int) []reply {
		r := make([]reply, 0, n+1)
		for i := range n {
			r = append(r, reply{status: 500 + i%4, body: "down"})
		}
		return append(r, reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: `{"ok":true}`})
	}
	tests := []struct {
		name        string
		replies     []reply
		attempts    int
		wantStatus  string
		wantTries   int // len(Tries)
		wantDropped int
	}{
		{"a step that succeeds at once keeps no list: the record is its one try", down(0), 3, StatusSucceeded, 0, 0},
		{"a step that succeeds on its third try lists all three", down(2), 3, StatusSucceeded, 3, 0},
		{"a step that fails every try lists each failure", down(5), 4, StatusFailed, 4, 0},
		{"a step tried fourteen times keeps the first and the latest nine, and counts four dropped", down(13), 20, StatusSucceeded, MaxTries, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newScripted(t, tc.replies...)
			s := mustParse(t, "tries", "name: tries\nsteps:\n  - name: call\n    http: {url: '${ settings.base }/x'}\n"+
				"    retry: {attempts: "+itoa(tc.attempts)+", backoff: 1s, max_backoff: 4s}\n")
			e, _, _ := testEngine(t)
			inv := invocation(s, nil)
			inv.Settings = map[string]any{"base": srv.URL}
			res := e.Run(context.Background(), inv)
			if res.Status != tc.wantStatus {
				t.Fatalf("status %s (%s), want %s", res.Status, res.Error, tc.wantStatus)
			}
			rec := res.Steps[0]
			if len(rec.Tries) != tc.wantTries || rec.TriesDropped != tc.wantDropped {
				t.Fatalf("%d tries kept, %d dropped; want %d and %d: %+v", len(rec.Tries), rec.TriesDropped, tc.wantTries, tc.wantDropped, rec.Tries)
			}
			if tc.wantTries == 0 {
				return
			}
			if rec.Attempts != len(rec.Tries)+rec.TriesDropped {
				t.Errorf("attempts %d, but %d kept + %d dropped", rec.Attempts, len(rec.Tries), rec.TriesDropped)
			}
			first, last := rec.Tries[0], rec.Tries[len(rec.Tries)-1]
			if first.Status != StatusFailed || first.HTTPStatus != 500 || !strings.Contains(first.Error, "unexpected status 500") {
				t.Errorf("first try %+v, want the 500 failure", first)
			}
			if last.Status != tc.wantStatus {
				t.Errorf("last try %+v, want %s", last, tc.wantStatus)
			}
			if tc.wantStatus == StatusSucceeded && (last.HTTPStatus != 200 || last.Error != "") {
				t.Errorf("last try %+v, want a clean 200", last)
			}
			for i := 1; i < len(rec.Tries); i++ {
				// The fake clock moves only in the retry waits: each try starts after the last.
				if !rec.Tries[i].Started.After(rec.Tries[i-1].Started) {
					t.Errorf("try %d started %v, not after try %d at %v", i, rec.Tries[i].Started, i-1, rec.Tries[i-1].Started)
				}
			}
			if tc.wantDropped > 0 && rec.Tries[1].Started.Sub(rec.Tries[0].Started) < 4*time.Second {
				t.Errorf("the second try kept started %v after the first: not one of the latest", rec.Tries[1].Started.Sub(rec.Tries[0].Started))
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestTriesSurviveASuspension: the tries made before a run suspended in a retry wait are
// in its checkpoint, and in the step's record once the run is woken and finishes.
func TestTriesSurviveASuspension(t *testing.T) {
	url, _ := throttled(t, 1)
	s := mustParse(t, "throttled", "name: throttled\nsteps:\n  - name: call\n    http: {url: \""+url+"\"}\n    retry: {attempts: 3, backoff: 1s, max_backoff: 1m}\n")
	var cp recordingCheckpointer
	e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
	inv := invocation(s, nil)
	inv.Suspend = true
	if res := e.Run(context.Background(), inv); res.Status != StatusWaiting {
		t.Fatalf("status %s, want waiting", res.Status)
	}
	st := cp.states[len(cp.states)-1]
	if len(st.StepTries) != 1 || st.StepTries[0].HTTPStatus != 503 || st.StepTries[0].Status != StatusFailed {
		t.Fatalf("checkpointed tries %+v, want the one 503", st.StepTries)
	}
	clock.mu.Lock()
	clock.now = st.WaitUntil
	clock.mu.Unlock()
	done := e.Resume(context.Background(), inv, st)
	if done.Status != StatusSucceeded {
		t.Fatalf("status %s (%s)", done.Status, done.Error)
	}
	tries := done.Steps[0].Tries
	if len(tries) != 2 || tries[0].HTTPStatus != 503 || tries[1].HTTPStatus != 200 || tries[1].Status != StatusSucceeded || !tries[1].Started.Equal(st.WaitUntil) {
		t.Errorf("tries after the wake-up %+v, want the 503 then the 200 at the wake time", tries)
	}
}
