package saga

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// reply is one scripted answer of a downstream.
type reply struct {
	status int
	header map[string]string
	body   string
}

// scripted is a downstream that gives its replies in order, then repeats the last one, and
// logs every request as "METHOD /path" in arrival order.
type scripted struct {
	mu      sync.Mutex
	replies []reply
	log     []string
}

func newScripted(t *testing.T, replies ...reply) (*httptest.Server, *scripted) {
	s := &scripted{replies: replies}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, s
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.Path)
	rp := s.replies[0]
	if len(s.replies) > 1 {
		s.replies = s.replies[1:]
	}
	s.mu.Unlock()
	for k, v := range rp.header {
		w.Header().Set(k, v)
	}
	if rp.status == 0 {
		rp.status = http.StatusOK
	}
	w.WriteHeader(rp.status)
	_, _ = io.WriteString(w, rp.body)
}

func (s *scripted) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func TestRetryAfter(t *testing.T) {
	start := newFakeClock().Now() // every test engine's clock starts here
	ok := reply{status: 200, header: map[string]string{"Content-Type": "application/json"}, body: `{"ok":true}`}
	limited := func(status int, retryAfter string) reply {
		return reply{status: status, header: map[string]string{"Retry-After": retryAfter}, body: "slow down"}
	}

	tests := []struct {
		name       string
		replies    []reply
		retry      string // the step's retry and timeout lines
		sagaTime   string // the saga's timeout, "" for none
		wantStatus string
		wantWaits  []time.Duration
		wantNote   string // in the recorded output's retry_after (success) or the error (failure)
		wantHits   int
	}{
		{"a 429 with Retry-After in seconds waits exactly that long, then succeeds",
			[]reply{limited(429, "7"), ok}, "retry: {attempts: 3, backoff: 1s}", "",
			StatusSucceeded, []time.Duration{7 * time.Second}, "try 2 after 7s as Retry-After: 7 asked", 2},
		{"a 503 with Retry-After is honoured too",
			[]reply{limited(503, "3"), ok}, "retry: {attempts: 3, backoff: 1s}", "",
			StatusSucceeded, []time.Duration{3 * time.Second}, "try 2 after 3s as Retry-After: 3 asked", 2},
		{"a Retry-After HTTP-date is measured against the engine's clock",
			[]reply{limited(429, start.Add(12*time.Second).Format(http.TimeFormat)), ok}, "retry: {attempts: 3, backoff: 1s}", "",
			StatusSucceeded, []time.Duration{12 * time.Second}, "try 2 after 12s as Retry-After: ", 2},
		{"a Retry-After date already past leaves the backoff",
			[]reply{limited(429, start.Add(-time.Hour).Format(http.TimeFormat)), ok}, "retry: {attempts: 3, backoff: 2s}", "",
			StatusSucceeded, []time.Duration{2 * time.Second}, "try 2 after 2s: backoff, longer than Retry-After", 2},
		{"a Retry-After longer than max_backoff is capped at max_backoff",
			[]reply{limited(429, "7200"), ok}, "retry: {attempts: 3, backoff: 1s, max_backoff: 5s}", "",
			StatusSucceeded, []time.Duration{5 * time.Second}, "capped at max_backoff 5s", 2},
		{"a Retry-After shorter than the backoff leaves the backoff",
			[]reply{limited(429, "1"), limited(429, "1"), ok}, "retry: {attempts: 3, backoff: 4s}", "",
			StatusSucceeded, []time.Duration{4 * time.Second, 8 * time.Second}, "try 3 after 8s: backoff", 3},
		{"a garbled Retry-After is ignored and the backoff applies",
			[]reply{limited(429, "soon, maybe"), ok}, "retry: {attempts: 3, backoff: 1s}", "",
			StatusSucceeded, []time.Duration{time.Second}, "", 2},
		{"a negative Retry-After is ignored",
			[]reply{limited(429, "-5"), ok}, "retry: {attempts: 3, backoff: 1s}", "",
			StatusSucceeded, []time.Duration{time.Second}, "", 2},
		{"Retry-After on a 500 is ignored: only 429 and 503 define it",
			[]reply{limited(500, "30"), ok}, "retry: {attempts: 3, backoff: 1s}", "",
			StatusSucceeded, []time.Duration{time.Second}, "", 2},
		{"a Retry-After beyond the step's timeout fails the step at once instead of sleeping past it",
			[]reply{limited(429, "30"), ok}, "timeout: 5s\n    retry: {attempts: 3, backoff: 1s}", "",
			StatusFailed, nil, "not retrying: the next try would be due in 30s (try 2 after 30s as Retry-After: 30 asked), after the step's timeout (5s)", 1},
		{"a Retry-After beyond the saga's timeout fails the step at once too",
			[]reply{limited(503, "45"), ok}, "retry: {attempts: 3, backoff: 1s}", "20s",
			StatusFailed, nil, "after the run's deadline", 1},
		{"the last try's Retry-After is not waited for",
			[]reply{limited(429, "7")}, "retry: {attempts: 2, backoff: 1s}", "",
			StatusFailed, []time.Duration{7 * time.Second}, "(earlier waits: try 2 after 7s as Retry-After: 7 asked)", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, down := newScripted(t, tc.replies...)
			src := "name: ra\n"
			if tc.sagaTime != "" {
				src += "timeout: " + tc.sagaTime + "\n"
			}
			src += "steps:\n  - name: call\n    http: {url: '${ settings.base }/x'}\n    " + tc.retry + "\n" +
				"  - name: look\n    respond: {body: '${ steps.call.output }'}\n"
			s := mustParse(t, "ra", src)
			var cp recordingCheckpointer
			e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
			inv := invocation(s, nil)
			inv.Settings = map[string]any{"base": srv.URL}
			res := e.Run(context.Background(), inv)

			if res.Status != tc.wantStatus {
				t.Fatalf("status %s (%s), want %s", res.Status, res.Error, tc.wantStatus)
			}
			if got := clock.Sleeps(); !reflect.DeepEqual(got, tc.wantWaits) {
				t.Errorf("waits %v, want %v", got, tc.wantWaits)
			}
			if got := len(down.Requests()); got != tc.wantHits || res.Steps[0].Attempts != tc.wantHits {
				t.Errorf("%d requests, %d attempts recorded, want %d", got, res.Steps[0].Attempts, tc.wantHits)
			}
			// Every wait is checkpointed before it starts, with the time it ends, so a restart
			// in the middle waits only what is left.
			var until []time.Duration
			for _, st := range cp.states {
				if !st.WaitUntil.IsZero() {
					until = append(until, st.WaitUntil.Sub(start))
				}
			}
			var total []time.Duration
			var sum time.Duration
			for _, w := range tc.wantWaits {
				sum += w
				total = append(total, sum)
			}
			if !reflect.DeepEqual(until, total) {
				t.Errorf("checkpointed waits end at start+%v, want start+%v", until, total)
			}

			out, _ := res.Steps[0].Output.(map[string]any)
			notes, _ := out["retry_after"].([]string)
			recorded := strings.Join(notes, "; ")
			if res.Status == StatusFailed {
				recorded = res.Steps[0].Error
				if !strings.Contains(res.Error, "call: ") {
					t.Errorf("run error %q does not name the step", res.Error)
				}
			}
			if tc.wantNote == "" && len(notes) > 0 {
				t.Errorf("Retry-After recorded as used: %v", notes)
			}
			if !strings.Contains(recorded, tc.wantNote) {
				t.Errorf("record %q does not say %q", recorded, tc.wantNote)
			}
			if tc.wantStatus == StatusSucceeded {
				// The note is history only: expressions still see the downstream's answer.
				body, _ := res.Answer.Body.(map[string]any)
				if _, leaked := body["retry_after"]; leaked || body["status"] != 200 {
					t.Errorf("steps.call.output as a later step sees it: %v", body)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"7", 7 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"0", 0, true},
		{"3600", time.Hour, true},
		{"99999999999999999999999", maxRetryAfter + time.Second, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second, true},
		{now.Add(90 * time.Second).Format(time.ANSIC), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"+5", 0, false},
		{"5s", 0, false},
		{"tomorrow", 0, false},
		{"Wed, 04 Mar 2026 05:06:97 GMT", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.header, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRetryAfterWaitIsBoundedWithoutMaxBackoff(t *testing.T) {
	// Sagas always get a max_backoff with a retry block; a Retry built in code may not, and
	// then the engine's own limit applies.
	ra := &retryAfterError{after: 48 * time.Hour, header: "172800"}
	wait, why := retryAfterWait(ra, Retry{Attempts: 3, Backoff: time.Second}, time.Second, 2)
	if wait != maxRetryAfter || !strings.Contains(why, "capped at the engine's limit 1h0m0s") {
		t.Errorf("wait %v (%s), want %v", wait, why, maxRetryAfter)
	}
}
