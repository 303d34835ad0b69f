package sagatest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/pushbackd/pushbackd/config"
)

// TestCasesNeverReachTheNetwork: a case whose url points at a live server on loopback
// (which the demo's egress allows) gets its mocked answer; the server sees nothing.
func TestCasesNeverReachTheNetwork(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	cfg, err := config.Load("../configs/pushbackd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("t.yaml", []byte(`saga: forward
cases:
  - name: mocked
    request: {partner: acme, endpoint: loans, body: {a: 1}}
    settings: {forward_url: "`+srv.URL+`/in"}
    mocks:
      forward: [{status: 202, body: {mocked: true}}]
    expect:
      answer: {status: 202, body: {mocked: true}}
      requests:
        forward: [{url: "`+srv.URL+`/in", body: {a: 1}}]
  - name: unmocked
    request: {partner: acme, endpoint: loans, body: {a: 1}}
    settings: {forward_url: "`+srv.URL+`/in"}
    expect:
      answer: {status: 502}
`))
	if err != nil {
		t.Fatal(err)
	}
	results := Run(context.Background(), cfg, cfg.Sagas["forward"], f)
	if !results[0].Passed {
		t.Errorf("mocked case: %+v", results[0].Failures)
	}
	// The unmocked call fails the step (forward answers 502) and the case (no mock).
	if results[1].Passed || len(results[1].Failures) != 1 || results[1].Failures[0].Path != "mocks" {
		t.Errorf("unmocked case: %+v", results[1])
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server on loopback got %d requests", n)
	}
}
