package saga

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

// TestRunsOfOneEngineShareRedactorsSafely: runs that reveal the same secret share the
// redactor the first built, and each run's record is still scrubbed of its own secret in
// every encoding, whichever secrets ran before it on the same Engine.
func TestRunsOfOneEngineShareRedactorsSafely(t *testing.T) {
	s := mustParse(t, "leak", `
name: leak
steps:
  - name: build
    set: {plain: "${ secret('key') }", wrapped: "x${ secret('key') }x"}
  - name: boom
    fail: "saw ${ vars.plain }"
`)
	e, _, _ := testEngine(t)
	for i, tok := range []string{"first-secret-AAAA", "second-secret-BBBB", "first-secret-AAAA", "second-secret-BBBB"} {
		t.Run("run "+strconv.Itoa(i)+" records none of its secret "+tok, func(t *testing.T) {
			inv := invocation(s, map[string]any{"a": 1})
			inv.Secrets = map[string]security.Secret{"key": security.NewSecret(tok)}
			res := e.Run(context.Background(), inv)
			all := toJSON(res)
			if strings.Contains(all, tok) || strings.Contains(all, base64.StdEncoding.EncodeToString([]byte(tok))) {
				t.Fatalf("the secret leaked into the result:\n%s", all)
			}
			if res.Error != "saw <secret>" {
				t.Errorf("error %q, want the secret scrubbed", res.Error)
			}
			if r := e.redactors.get(tok); r == nil || !r.found(tok) {
				t.Errorf("the engine holds no redactor for the revealed secret")
			}
		})
	}
	t.Run("the cache stays within its bound however many secrets come", func(t *testing.T) {
		for i := range 2 * maxCachedRedactors {
			inv := invocation(s, map[string]any{"a": 1})
			inv.Secrets = map[string]security.Secret{"key": security.NewSecret("secret-number-" + strconv.Itoa(i))}
			e.Run(context.Background(), inv)
			if n := len(e.redactors.m); n > maxCachedRedactors {
				t.Fatalf("%d redactors cached, bound %d", n, maxCachedRedactors)
			}
		}
	})
}

// TestConcealedHeaderValuesStayOutOfTheRedactorCache: a credential header rendered from
// request data is scrubbed from its own run's record but never kept by the Engine, so the
// cache holds only what secret() returned.
func TestConcealedHeaderValuesStayOutOfTheRedactorCache(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(r.Header.Get("Authorization"))) // a careless downstream echoes it
	}))
	defer srv.Close()
	s := mustParse(t, "conceal", `
name: conceal
steps:
  - name: call
    http:
      method: POST
      url: `+srv.URL+`/x
      headers: {Authorization: "Bearer ${ body.token }"}
`)
	e, _, _ := testEngine(t)
	const tok = "sender-chosen-token-123"
	res := e.Run(context.Background(), invocation(s, map[string]any{"token": tok}))
	if all := toJSON(res); strings.Contains(all, tok) {
		t.Fatalf("the concealed credential leaked into the result:\n%s", all)
	}
	for k := range e.redactors.m {
		if strings.Contains(k, tok) {
			t.Fatalf("the engine cached a redactor for a concealed header value")
		}
	}
}

// TestPureSagaRunAllocations bounds the allocations of BenchmarkRunPureSaga's run (91
// before the shared redactors and the per-step suspension check were fixed): GC work per
// request is what the pure saga's throughput follows. One of them is the answer's body
// encoded once (Answer.BodyJSON), which saves the gateway and the dispatcher their own.
func TestPureSagaRunAllocations(t *testing.T) {
	s := mustParse(t, "bench", benchSaga)
	inv := benchInvocation(t, s)
	e := NewEngine(EngineOptions{})
	ctx := context.Background()
	e.Run(ctx, inv) // fills the redactor cache, as every run after a partner's first finds it
	if n := testing.AllocsPerRun(50, func() {
		if res := e.Run(ctx, inv); res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
	}); n > 76 {
		t.Errorf("a pure saga run allocates %v times, want at most 76", n)
	}
}
