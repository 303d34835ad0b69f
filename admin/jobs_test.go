package admin

import (
	"strings"
	"testing"
	"time"
)

// Whatever the body, the parser answers a usable filter or an error, never a panic, and
// never a filter that selects nothing in particular.
func FuzzParseReplayRequest(f *testing.F) {
	for _, s := range []string{
		`{"filter": {"status": "failed", "since": "2h"}, "dry_run": true}`,
		`{"filter": {"partner": "acme", "site": "retail", "endpoint": "loans", "saga": "s", "until": "2026-11-22T10:00:00Z"}}`,
		`{"filter": {}}`, `{"filter": {"stauts": "failed"}}`, `{"filter": {"status": 5}}`, `null`, `[]`, `{"filter": null}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		flt, _, err := parseReplayRequest(strings.NewReader(string(body)), now)
		if err != nil {
			return
		}
		if flt.Partner == "" && flt.Site == "" && flt.Endpoint == "" && flt.Saga == "" && flt.Status == "" && flt.Since.IsZero() && flt.Until.IsZero() {
			t.Fatalf("%q parsed to a filter that selects everything: %+v", body, flt)
		}
		if flt.Limit != 0 || flt.Cursor != "" || flt.IdempotencyKey != "" || flt.ReplayOf != "" {
			t.Fatalf("%q set a key a bulk replay does not take: %+v", body, flt)
		}
	})
}
