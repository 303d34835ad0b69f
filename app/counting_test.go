package app

import (
	"fmt"
	"net/http"
	"testing"
)

// Answers that record nothing new still show in the metrics: duplicates by endpoint, and
// runs a debounce superseded among the runs' final statuses.
func TestDuplicatesAndSupersededRunsAreCounted(t *testing.T) {
	a := startWith(t, map[string]string{
		"pushbackd.yaml": "",
		"partners/acme.yaml": `id: acme
endpoints:
  - {name: once, saga: pong, idempotency_key: "${ body.eventId }", security: {method: bearer, tokens: [{value: t}]}}
  - {name: once-sync, saga: pong, mode: sync, idempotency_key: "${ body.eventId }", security: {method: bearer, tokens: [{value: t}]}}
  - {name: quiet, saga: quiet, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/pong.yaml": `name: pong
steps:
  - name: answer
    respond: {status: 200, body: {ok: true}}
`,
		"sagas/quiet.yaml": `name: quiet
debounce: {key: "${ body.loan }", wait: 1h}
steps:
  - name: answer
    respond: {status: 200, body: {ok: true}}
`,
	})
	c := newAdmin(t, a)
	tests := []struct {
		name, endpoint string
		bodies         []string
		metric         string
		want           float64
	}{
		{"an async endpoint's repeated idempotency key counts one duplicate per repeat", "once",
			[]string{`{"eventId": "e1"}`, `{"eventId": "e1"}`, `{"eventId": "e1"}`, `{"eventId": "e2"}`},
			`pushbackd_duplicates_total{endpoint="once",partner="acme"}`, 2},
		{"a sync endpoint's duplicate is counted too", "once-sync",
			[]string{`{"eventId": "s1"}`, `{"eventId": "s1"}`},
			`pushbackd_duplicates_total{endpoint="once-sync",partner="acme"}`, 1},
		{"runs a debounce superseded are counted as final runs", "quiet",
			[]string{`{"loan": "L1"}`, `{"loan": "L1"}`, `{"loan": "L1"}`, `{"loan": "L2"}`},
			`pushbackd_runs_total{endpoint="quiet",partner="acme",saga="quiet",status="superseded"}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, body := range tt.bodies {
				if code, ans := post(t, a, tt.endpoint, body); code != http.StatusOK && code != http.StatusAccepted {
					t.Fatalf("post %d: %d %v", i, code, ans)
				}
			}
			if got := scrape(t, c)[tt.metric]; got != tt.want {
				t.Errorf("%s = %v, want %v", tt.metric, got, tt.want)
			}
		})
	}
	if got := scrape(t, c)[fmt.Sprintf(`pushbackd_duplicates_total{endpoint=%q,partner="acme"}`, "quiet")]; got != 0 {
		t.Errorf("a debounced endpoint counted %v duplicates", got)
	}
}
