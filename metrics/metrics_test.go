package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

// Every answer is counted, a refused guess's 401 included: counting one must not allocate.
func TestCountingAnAnswerAllocatesNothing(t *testing.T) {
	m := New(func() int { return 0 })
	for _, tc := range []struct {
		name  string
		count func()
	}{
		{"a 401 to a guess", func() { m.Request("acme", "encompass", 401, "") }},
		{"a durable accept's 202", func() { m.Request("acme", "encompass", 202, "") }},
		{"a sync answer's 200", func() { m.Request("acme", "encompass", 200, "") }},
		{"the authentication failure behind a 401", func() {
			m.AuthFailure("acme", "", "encompass", security.Signature, security.ReasonMismatch)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.count() // the first creates the series
			if n := testing.AllocsPerRun(100, tc.count); n != 0 {
				t.Errorf("%v allocations per answer, want 0", n)
			}
		})
	}
}

func BenchmarkRequest401(b *testing.B) {
	m := New(func() int { return 0 })
	b.ReportAllocs()
	for b.Loop() {
		m.Request("acme", "encompass", 401, "")
		m.AuthFailure("acme", "", "encompass", security.Signature, security.ReasonMismatch)
	}
}

// BenchmarkRequest401Parallel counts from every CPU at once, as a busy server does.
func BenchmarkRequest401Parallel(b *testing.B) {
	m := New(func() int { return 0 })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("acme", "encompass", 401, "")
			m.AuthFailure("acme", "", "encompass", security.Signature, security.ReasonMismatch)
		}
	})
}

// The resolved series are the exported ones: counts made through them reach the scrape.
func TestCountsReachTheExportedSeries(t *testing.T) {
	m := New(func() int { return 0 })
	for range 3 {
		m.Request("acme", "encompass", 401, "")
		m.AuthFailure("acme", "site-1", "encompass", security.Signature, security.ReasonMismatch)
	}
	m.Request("acme", "encompass", 202, "")
	m.Request("acme", "encompass", 999, "")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	scrape := string(b)
	for _, tc := range []struct{ name, line string }{
		{"three 401s count three", `pushbackd_requests_total{code="401",endpoint="encompass",partner="acme",reason=""} 3`},
		{"one 202 counts one", `pushbackd_requests_total{code="202",endpoint="encompass",partner="acme",reason=""} 1`},
		{"a code outside the table still counts", `pushbackd_requests_total{code="999",endpoint="encompass",partner="acme",reason=""} 1`},
		{"three failures count three", `pushbackd_auth_failures_total{endpoint="encompass",method="signature",partner="acme",reason="mismatch",site="site-1"} 3`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(scrape, tc.line+"\n") {
				t.Errorf("no line %s in the scrape:\n%s", tc.line, scrape)
			}
		})
	}
}
