package saga

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store/memory"
	"go.uber.org/zap/zaptest"
)

// fakeClock never sleeps: Sleep moves time forward and records the wait, so retry and
// backoff tests are exact and instant.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// mustParse compiles a saga from YAML text or fails the test with every error.
func mustParse(t testing.TB, name, src string) *Saga {
	t.Helper()
	s, errs := Parse("sagas/"+name+".yaml", []byte(src))
	if len(errs) > 0 {
		t.Fatalf("parse %s:\n%v", name, errs)
	}
	return s
}

// loopbackOnly is the egress list of test engines: their downstreams are httptest servers
// on loopback, which the default policy refuses.
var loopbackOnly = EgressPolicy{Allow: []string{"127.0.0.1", "::1"}}

// testEngine is an engine on a fake clock, an in-memory KV and identity jitter, allowed to
// reach loopback (a mod may set another Egress).
func testEngine(t testing.TB, mod ...func(*EngineOptions)) (*Engine, *fakeClock, *memory.KV) {
	clock := newFakeClock()
	kv := memory.NewKV(clock)
	o := EngineOptions{
		Clock:  clock,
		KV:     kv,
		Jitter: func(d time.Duration) time.Duration { return d },
		Egress: loopbackOnly,
	}
	if tt, ok := t.(*testing.T); ok {
		o.Logger = zaptest.NewLogger(tt)
	}
	for _, m := range mod {
		m(&o)
	}
	return NewEngine(o), clock, kv
}

// invocation builds an Invocation for s carrying body as a JSON request.
func invocation(s *Saga, body any) *Invocation {
	raw, _ := json.Marshal(body)
	var parsed any
	_ = json.Unmarshal(raw, &parsed)
	return &Invocation{
		RunID:    "run-1",
		Saga:     s,
		Partner:  Ref{ID: "acme", Name: "Acme Lending"},
		Endpoint: "encompass",
		Settings: map[string]any{},
		Secrets:  map[string]security.Secret{},
		Request: Request{
			Method:     http.MethodPost,
			Path:       "/pushback/acme/encompass",
			Headers:    http.Header{"Content-Type": {"application/json"}},
			Raw:        raw,
			Body:       parsed,
			RemoteIP:   "192.0.2.1",
			ReceivedAt: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		},
	}
}

// payload reads one of the shared sample payloads.
func payload(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/payloads/" + name)
	if err != nil {
		t.Fatalf("payload %s: %v", name, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
