package saga

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultyDownstream stands in for the systems a saga calls. /reserve and /record succeed and
// hand out ids, /undo/... takes compensations, /alert takes on_failure, and /call runs the
// handler under test. Every request is logged in arrival order, so tests can check that
// compensations run newest first and on_failure after them.
type faultyDownstream struct {
	mu     sync.Mutex
	log    []string
	alerts []map[string]any
}

func newFaultyDownstream(t *testing.T, call http.HandlerFunc) (*httptest.Server, *faultyDownstream) {
	d := &faultyDownstream{}
	mux := http.NewServeMux()
	answer := func(id string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			d.note(r.Method + " " + r.URL.Path)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"`+id+`"}`)
		}
	}
	mux.HandleFunc("POST /reserve", answer("r-1"))
	mux.HandleFunc("POST /record", answer("c-9"))
	mux.HandleFunc("DELETE /undo/", func(w http.ResponseWriter, r *http.Request) {
		d.note(r.Method + " " + r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /alert", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		d.mu.Lock()
		d.alerts = append(d.alerts, m)
		d.mu.Unlock()
		d.note(r.Method + " " + r.URL.Path)
	})
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		d.note(r.Method + " " + r.URL.Path)
		call(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, d
}

func (d *faultyDownstream) note(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = append(d.log, s)
}

func (d *faultyDownstream) Log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.log...)
}

func (d *faultyDownstream) Alerts() []map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]map[string]any(nil), d.alerts...)
}

// hangUntilGone holds the request until the client gives up. The 5s bound only keeps a
// broken engine from hanging the test; a passing run never gets near it.
func hangUntilGone(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

// resetMidAnswer promises 100 bytes, sends a few, and resets the connection: SetLinger(0)
// makes Close send RST instead of FIN, which is what a crashing peer or a load balancer
// dropping the connection looks like.
func resetMidAnswer(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":")
	_ = buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// resetBeforeAnswer resets the connection without a byte of answer.
func resetBeforeAnswer(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// trickle sends the headers at once and then one byte every 20ms, forever: each read
// makes progress, so only a timeout on the whole exchange ends it.
func trickle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for i := 0; i < 250; i++ { // 5s at most, see hangUntilGone
		select {
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := io.WriteString(w, "x"); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// sequence answers with each handler in turn, then keeps using the last.
func sequence(hs ...http.HandlerFunc) http.HandlerFunc {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := hs[0]
		if len(hs) > 1 {
			hs = hs[1:]
		}
		mu.Unlock()
		h(w, r)
	}
}

func status(code int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

// faultSaga reserves and records (each with a compensation), then makes the call under
// test; on_failure reports the failing step and its message. callFirst puts the call
// before the others, so a failure has nothing to undo.
func faultSaga(t *testing.T, call string, callFirst bool) *Saga {
	undoable := `
  - name: reserve
    http: {method: POST, url: "${ settings.base }/reserve"}
    compensate:
      http: {method: DELETE, url: "${ settings.base }/undo/reserve/${ steps.reserve.output.body.id }"}
  - name: record
    http: {method: POST, url: "${ settings.base }/record"}
    compensate:
      http: {method: DELETE, url: "${ settings.base }/undo/record/${ steps.record.output.body.id }"}
`
	callStep := "\n  - name: call\n" + call + "\n"
	steps := undoable + callStep
	if callFirst {
		steps = callStep + undoable
	}
	return mustParse(t, "faults", `
name: faults
steps:`+steps+`
on_failure:
  http: {method: POST, url: "${ settings.base }/alert", json: {step: "${ error.step }", error: "${ error.message }"}}
`)
}

// TestDownstreamFaults runs a saga against a downstream that misbehaves in the ways real
// ones do, and checks DESIGN §6 end to end: a step that fails after its retries has the
// succeeded steps compensated newest first, each compensation recorded, then on_failure
// runs; the run ends compensated. Waits between tries go through the fake clock, so only
// the timeouts that a real socket must hit take real time (at most 100ms each).
func TestDownstreamFaults(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		call         string // the call step's keys besides name
		wantStatus   string
		wantError    string // regexp over the run's error
		wantAttempts int
		wantWaits    []time.Duration
	}{
		{
			name:    "a request that outlasts the step's timeout fails the step and the rest is undone",
			handler: hangUntilGone,
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    timeout: 80ms`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: step timed out after 80ms$`, wantAttempts: 1,
		},
		{
			name:    "a request that outlasts the http timeout is retried, then fails",
			handler: hangUntilGone,
			call: `    http: {method: POST, url: "${ settings.base }/call", timeout: 50ms}
    retry: {attempts: 2, backoff: 1s}`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: timed out after 50ms$`, wantAttempts: 2,
			wantWaits: []time.Duration{time.Second},
		},
		{
			name:    "a connection reset in the middle of the answer fails the step after its retries",
			handler: resetMidAnswer,
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    retry: {attempts: 3, backoff: 1s}`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: .*(reset|EOF)`, wantAttempts: 3,
			wantWaits: []time.Duration{time.Second, 2 * time.Second},
		},
		{
			name:    "a connection reset before any answer fails the step after its retries",
			handler: resetBeforeAnswer,
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    retry: {attempts: 2, backoff: 1s}`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: .*(reset|EOF)`, wantAttempts: 2,
			wantWaits: []time.Duration{time.Second},
		},
		{
			name:    "a connection reset once is retried and the run succeeds",
			handler: sequence(resetMidAnswer, status(200)),
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    retry: {attempts: 3, backoff: 1s}`,
			wantStatus: StatusSucceeded, wantAttempts: 2, wantWaits: []time.Duration{time.Second},
		},
		{
			name:    "5xx answers are retried with backoff and a later success ends the run well",
			handler: sequence(status(502), status(503), status(500), status(201)),
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    retry: {attempts: 5, backoff: 1s}`,
			wantStatus: StatusSucceeded, wantAttempts: 4,
			wantWaits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		},
		{
			name:    "5xx answers on every try fail the step and the rest is undone",
			handler: status(502),
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    retry: {attempts: 3, backoff: 1s, max_backoff: 1500ms}`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: unexpected status 502: Bad Gateway$`, wantAttempts: 3,
			wantWaits: []time.Duration{time.Second, 1500 * time.Millisecond},
		},
		{
			name:    "a 429 with Retry-After waits as asked and a later success ends the run well",
			handler: sequence(status(429, "Retry-After", "7"), status(200)),
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    retry: {attempts: 3, backoff: 1s}`,
			wantStatus: StatusSucceeded, wantAttempts: 2, wantWaits: []time.Duration{7 * time.Second},
		},
		{
			name:    "a 429 whose Retry-After outlasts the step's timeout fails at once and the rest is undone",
			handler: status(429, "Retry-After", "120"),
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    timeout: 10s
    retry: {attempts: 3, backoff: 1s, max_backoff: 5m}`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: unexpected status 429: Too Many Requests; not retrying: the next try would be due in 2m0s \(try 2 after 2m0s as Retry-After: 120 asked\), after the step's timeout \(10s\)`,
			wantAttempts: 1,
		},
		{
			name:    "a body that trickles in slower than the http timeout fails the step instead of hanging",
			handler: trickle,
			call: `    http: {method: POST, url: "${ settings.base }/call", timeout: 100ms}
    retry: {attempts: 2, backoff: 1s}`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: reading the answer: timed out after 100ms$`, wantAttempts: 2,
			wantWaits: []time.Duration{time.Second},
		},
		{
			name:    "a body that trickles in past the step's timeout fails the step instead of hanging",
			handler: trickle,
			call: `    http: {method: POST, url: "${ settings.base }/call"}
    timeout: 100ms`,
			wantStatus: StatusCompensated, wantError: `^call: POST http://[^ ]+/call: reading the answer: step timed out after 100ms$`, wantAttempts: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, down := newFaultyDownstream(t, tc.handler)
			e, clock, _ := testEngine(t)
			inv := invocation(faultSaga(t, tc.call, false), nil)
			inv.Settings = map[string]any{"base": srv.URL}
			began := time.Now()
			res := e.Run(context.Background(), inv)
			if took := time.Since(began); took > 3*time.Second {
				t.Errorf("the run took %v: something waited for real", took)
			}

			if res.Status != tc.wantStatus {
				t.Fatalf("status %s (%s), want %s", res.Status, res.Error, tc.wantStatus)
			}
			if !regexp.MustCompile(tc.wantError).MatchString(res.Error) || (tc.wantError == "") != (res.Error == "") {
				t.Errorf("error %q, want a match for %q", res.Error, tc.wantError)
			}
			call := res.Steps[len(res.Steps)-1]
			if call.Name != "call" || call.Attempts != tc.wantAttempts {
				t.Errorf("last step %s after %d attempts, want call after %d", call.Name, call.Attempts, tc.wantAttempts)
			}
			if got := clock.Sleeps(); !reflect.DeepEqual(got, tc.wantWaits) {
				t.Errorf("waits %v, want %v", got, tc.wantWaits)
			}
			tries := strings.Repeat("POST /call,", tc.wantAttempts)
			if tc.wantStatus == StatusSucceeded {
				if len(res.Compensations) != 0 || res.OnFailure != nil || res.FailedStep != "" {
					t.Errorf("a run that succeeded was cleaned up: %+v, on_failure %+v", res.Compensations, res.OnFailure)
				}
				if got := strings.Join(down.Log(), ","); got != "POST /reserve,POST /record,"+strings.TrimSuffix(tries, ",") {
					t.Errorf("downstream saw %s", got)
				}
				return
			}

			if res.FailedStep != "call" || call.Status != StatusFailed {
				t.Errorf("failed step %q, call %s", res.FailedStep, call.Status)
			}
			if got := names(res.Steps); !reflect.DeepEqual(got, []string{"reserve:compensated", "record:compensated", "call:failed"}) {
				t.Errorf("steps %v", got)
			}
			if got := names(res.Compensations); !reflect.DeepEqual(got, []string{"record:succeeded", "reserve:succeeded"}) {
				t.Errorf("compensations %v, want record then reserve", got)
			}
			if res.OnFailure == nil || res.OnFailure.Status != StatusSucceeded {
				t.Fatalf("on_failure %+v", res.OnFailure)
			}
			want := "POST /reserve,POST /record," + tries + "DELETE /undo/record/c-9,DELETE /undo/reserve/r-1,POST /alert"
			if got := strings.Join(down.Log(), ","); got != want {
				t.Errorf("downstream saw %s\nwant              %s", got, want)
			}
			if a := down.Alerts(); len(a) != 1 || a[0]["step"] != "call" || a[0]["error"] != res.Error {
				t.Errorf("on_failure sent %v, want step call and error %q", a, res.Error)
			}
		})
	}

	t.Run("with nothing to undo a failed run ends failed and on_failure still runs", func(t *testing.T) {
		for _, h := range []struct {
			name    string
			handler http.HandlerFunc
			call    string
		}{
			{"timeout", hangUntilGone, "    http: {method: POST, url: \"${ settings.base }/call\", timeout: 50ms}"},
			{"reset", resetMidAnswer, "    http: {method: POST, url: \"${ settings.base }/call\"}"},
			{"5xx", status(503), "    http: {method: POST, url: \"${ settings.base }/call\"}\n    retry: {attempts: 2}"},
		} {
			srv, down := newFaultyDownstream(t, h.handler)
			e, _, _ := testEngine(t)
			inv := invocation(faultSaga(t, h.call, true), nil)
			inv.Settings = map[string]any{"base": srv.URL}
			res := e.Run(context.Background(), inv)
			if res.Status != StatusFailed || res.FailedStep != "call" || len(res.Compensations) != 0 || len(res.Steps) != 1 {
				t.Errorf("%s: status %s, failed step %q, %d compensations, steps %v", h.name, res.Status, res.FailedStep, len(res.Compensations), names(res.Steps))
			}
			if res.OnFailure == nil || res.OnFailure.Status != StatusSucceeded || len(down.Alerts()) != 1 {
				t.Errorf("%s: on_failure %+v, %d alerts", h.name, res.OnFailure, len(down.Alerts()))
			}
			if log := down.Log(); len(log) == 0 || log[len(log)-1] != "POST /alert" || strings.Contains(strings.Join(log, ","), "reserve") {
				t.Errorf("%s: downstream saw %v", h.name, log)
			}
		}
	})
}
