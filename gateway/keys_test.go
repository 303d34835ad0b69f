package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
	"github.com/pushbackd/pushbackd/store/storetest"
)

// The tests in this file run the gateway on loopback in front of the real dispatcher, saga
// engine and a bbolt file, because what they check — which run a key points at, which run
// a debounce supersedes, what survives a restart — lives in the store.

const (
	whsec        = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	stripeSecret = "whsec_gateway-stripe-secret"
)

// keysPartner has endpoints at the partner and at two sites: branch defines its own (with
// its own token), east inherits the partner's.
const keysPartner = `id: p
endpoints:
  - {name: loans, saga: note, idempotency_key: "${ body.eventId }", security: {method: bearer, tokens: [{value: partner-token}]}}
  - {name: waits, saga: wait-endpoint, security: {method: bearer, tokens: [{value: partner-token}]}}
  - {name: waits-site, saga: wait-site, security: {method: bearer, tokens: [{value: partner-token}]}}
  - {name: waits-partner, saga: wait-partner, security: {method: bearer, tokens: [{value: partner-token}]}}
  - {name: hooks, saga: note, security: {method: standard_webhooks, secrets: [{value: ` + whsec + `}]}}
  - {name: hooks-keyed, saga: note, idempotency_key: "${ body.eventId }", security: {method: standard_webhooks, secrets: [{value: ` + whsec + `}]}}
  - {name: stripe, saga: note, security: {preset: stripe, secrets: [{value: ` + stripeSecret + `}]}}
sites:
  - id: branch
    endpoints:
      - {name: loans, saga: note, idempotency_key: "${ body.eventId }", security: {method: bearer, tokens: [{value: branch-token}]}}
      - {name: waits, saga: wait-endpoint, security: {method: bearer, tokens: [{value: branch-token}]}}
      - {name: waits-site, saga: wait-site, security: {method: bearer, tokens: [{value: branch-token}]}}
      - {name: waits-site-2, saga: wait-site, security: {method: bearer, tokens: [{value: branch-token}]}}
      - {name: waits-partner, saga: wait-partner, security: {method: bearer, tokens: [{value: branch-token}]}}
  - id: east
`

var keysSagas = map[string]string{
	"note":          "name: note\nsteps:\n  - {name: seen, set: {seen: true}}\n",
	"wait-endpoint": "name: wait-endpoint\ndebounce: {key: \"${ body.loan }\", wait: 1h}\nsteps:\n  - {name: seen, set: {seen: true}}\n",
	"wait-site":     "name: wait-site\ndebounce: {key: \"${ body.loan }\", wait: 1h, scope: site}\nsteps:\n  - {name: seen, set: {seen: true}}\n",
	"wait-partner":  "name: wait-partner\ndebounce: {key: \"${ body.loan }\", wait: 1h, scope: partner}\nsteps:\n  - {name: seen, set: {seen: true}}\n",
}

// neverClock is the dispatcher's clock: the test's time, and waits that never end while
// the test looks at them.
type neverClock struct{ *storetest.ManualClock }

func (neverClock) AfterFunc(time.Duration, func()) func() bool { return func() bool { return true } }

type live struct {
	t     *testing.T
	clock *storetest.ManualClock
	cfg   *config.Config
	path  string
	st    *bolt.Store
	d     *dispatch.Dispatcher
	srv   *httptest.Server
}

func startLive(t *testing.T) *live {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"pushbackd.yaml": "listen: 127.0.0.1:0\n", "partners/p.yaml": keysPartner}
	for name, src := range keysSagas {
		files["sagas/"+name+".yaml"] = src
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "pushbackd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l := &live{t: t, clock: storetest.NewManualClock(), cfg: cfg, path: filepath.Join(dir, "data", "pushbackd.db")}
	l.open()
	t.Cleanup(l.close)
	return l
}

func (l *live) open() {
	t := l.t
	st, err := bolt.Open(l.path, bolt.Options{Clock: l.clock})
	if err != nil {
		t.Fatal(err)
	}
	d := dispatch.New(dispatch.Options{Store: st, Logger: zaptest.NewLogger(t), Clock: neverClock{l.clock},
		Rebuild: func(run *store.Run) (*saga.Invocation, error) { return InvocationForRun(l.cfg, run) }})
	engine := saga.NewEngine(saga.EngineOptions{Logger: zaptest.NewLogger(t), KV: st, Checkpointer: d})
	if err := d.Start(context.Background(), engine); err != nil {
		t.Fatal(err)
	}
	gw := New(Options{Config: staticConfig{l.cfg}, Runs: d, Logger: zaptest.NewLogger(t), Now: l.clock.Now})
	l.st, l.d, l.srv = st, d, httptest.NewServer(gw)
}

func (l *live) close() {
	if l.srv == nil {
		return
	}
	l.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.d.Stop(ctx); err != nil {
		l.t.Error(err)
	}
	if err := l.st.Check(); err != nil {
		l.t.Errorf("the data file after the test: %v", err)
	}
	if err := l.st.Close(); err != nil {
		l.t.Error(err)
	}
	l.srv = nil
}

// restart stops everything and opens the same data file again, as a new process would.
func (l *live) restart() {
	l.close()
	l.open()
}

func (l *live) post(path string, headers map[string]string, body string) answer {
	l.t.Helper()
	h := &harness{srv: l.srv}
	a := h.post(l.t, path, headers, []byte(body))
	if a.code != http.StatusOK {
		l.t.Fatalf("POST %s: %d %s", path, a.code, a.raw)
	}
	return a
}

func (l *live) run(id string) *store.Run {
	l.t.Helper()
	r, err := l.st.GetRun(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	return r
}

func (l *live) runs(endpoint string) int {
	l.t.Helper()
	runs, _, err := l.st.List(context.Background(), store.Filter{Partner: "p", Endpoint: endpoint, Limit: store.MaxListLimit})
	if err != nil {
		l.t.Fatal(err)
	}
	return len(runs)
}

func bearerOf(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
}

func runID(a answer) string {
	id, _ := a.body["run_id"].(string)
	return id
}

func TestIdempotencyKeysAreScopedToTheirEndpoint(t *testing.T) {
	l := startLive(t)
	partner, branch := bearerOf("partner-token"), bearerOf("branch-token")
	for _, tc := range []struct {
		name          string
		first, second string
		firstAuth     map[string]string
		secondAuth    map[string]string
		duplicate     bool
	}{
		{"a site's event does not block the partner's event with the same id",
			"/pushback/p/branch/loans", "/pushback/p/loans", branch, partner, false},
		{"the partner's event does not block the site's event with the same id",
			"/pushback/p/loans", "/pushback/p/branch/loans", partner, branch, false},
		{"an endpoint a site inherits keeps its own keys",
			"/pushback/p/loans", "/pushback/p/east/loans", partner, partner, false},
		{"the partner's event sent twice runs once",
			"/pushback/p/loans", "/pushback/p/loans", partner, partner, true},
		{"a site's event sent twice runs once",
			"/pushback/p/branch/loans", "/pushback/p/branch/loans", branch, branch, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"eventId":%q}`, "E-"+tc.name)
			first := l.post(tc.first, tc.firstAuth, body)
			second := l.post(tc.second, tc.secondAuth, body)
			if first.body["duplicate"] == true {
				t.Fatalf("the first post is a duplicate: %s", first.raw)
			}
			gotDup := second.body["duplicate"] == true
			if gotDup != tc.duplicate {
				t.Fatalf("second post: %s; want duplicate %v", second.raw, tc.duplicate)
			}
			if tc.duplicate && runID(second) != runID(first) {
				t.Fatalf("the duplicate names run %s, want %s", runID(second), runID(first))
			}
			if !tc.duplicate && runID(second) == runID(first) {
				t.Fatal("both posts name one run")
			}
		})
	}
}

func TestDebounceKeysAreScopedAsTheSagaSays(t *testing.T) {
	l := startLive(t)
	partner, branch := bearerOf("partner-token"), bearerOf("branch-token")
	for i, tc := range []struct {
		name          string
		first, second string
		firstAuth     map[string]string
		secondAuth    map[string]string
		superseded    bool
	}{
		{"by default a site's event does not supersede the partner's waiting run",
			"/pushback/p/waits", "/pushback/p/branch/waits", partner, branch, false},
		{"by default an endpoint a site inherits does not supersede the partner's",
			"/pushback/p/waits", "/pushback/p/east/waits", partner, partner, false},
		{"by default a later event at the same endpoint supersedes",
			"/pushback/p/branch/waits", "/pushback/p/branch/waits", branch, branch, true},
		{"with scope site another endpoint of the site supersedes",
			"/pushback/p/branch/waits-site", "/pushback/p/branch/waits-site-2", branch, branch, true},
		{"with scope site the partner's own endpoints are another site",
			"/pushback/p/waits-site", "/pushback/p/branch/waits-site", partner, branch, false},
		{"with scope partner a site's event supersedes the partner's",
			"/pushback/p/waits-partner", "/pushback/p/branch/waits-partner", partner, branch, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"loan":"L-%d"}`, i)
			first := l.post(tc.first, tc.firstAuth, body)
			second := l.post(tc.second, tc.secondAuth, body)
			want := store.StatusWaiting
			if tc.superseded {
				want = store.StatusSuperseded
			}
			if got := l.run(runID(first)).Status; got != want {
				t.Fatalf("the first run is %s, want %s", got, want)
			}
			if got := l.run(runID(second)).Status; got != store.StatusWaiting {
				t.Fatalf("the second run is %s, want waiting", got)
			}
		})
	}
}

// signed is a Standard Webhooks message as its sender would post it at sent.
func signed(t *testing.T, body, msgID string, sent time.Time) map[string]string {
	t.Helper()
	cfg := security.Config{Method: security.StandardWebhooks, Secrets: []security.Secret{security.NewSecret(whsec)}}
	h, _, err := security.Sign(cfg, []byte(body), msgID, sent)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"Content-Type": "application/json"}
	for k := range h {
		out[k] = h.Get(k)
	}
	return out
}

// stripeSigned is a Stripe event as Stripe would post it at sent: the HMAC computed here
// from Stripe's documented scheme, not by the security package.
func stripeSigned(body string, sent time.Time) map[string]string {
	ts := strconv.FormatInt(sent.Unix(), 10)
	m := hmac.New(sha256.New, []byte(stripeSecret))
	m.Write([]byte(ts + "." + body))
	return map[string]string{"Content-Type": "application/json", "Stripe-Signature": "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))}
}

func TestTimestampedSignaturesAreNotReplayed(t *testing.T) {
	const body = `{"id":"evt_1"}`
	t.Run("three posts of one signed message make one run", func(t *testing.T) {
		l := startLive(t)
		msg := stripeSigned(body, l.clock.Now())
		first := l.post("/pushback/p/stripe", msg, body)
		for i := 0; i < 2; i++ {
			again := l.post("/pushback/p/stripe", msg, body)
			if again.body["duplicate"] != true || runID(again) != runID(first) {
				t.Fatalf("replay %d: %s; want a duplicate of %s", i+1, again.raw, runID(first))
			}
		}
		if n := l.runs("stripe"); n != 1 {
			t.Fatalf("%d runs, want 1", n)
		}
	})
	t.Run("a replay with its parts reordered and a forged v1 added is still a duplicate", func(t *testing.T) {
		l := startLive(t)
		msg := stripeSigned(body, l.clock.Now())
		first := l.post("/pushback/p/stripe", msg, body)
		t1, v1, _ := strings.Cut(msg["Stripe-Signature"], ",")
		dressed := map[string]string{"Content-Type": "application/json", "Stripe-Signature": v1 + ",v1=" + strings.Repeat("0", 64) + "," + t1}
		again := l.post("/pushback/p/stripe", dressed, body)
		if again.body["duplicate"] != true || runID(again) != runID(first) {
			t.Fatalf("dressed replay: %s; want a duplicate of %s", again.raw, runID(first))
		}
	})
	t.Run("the same body signed a second later is a new message", func(t *testing.T) {
		l := startLive(t)
		first := l.post("/pushback/p/stripe", stripeSigned(body, l.clock.Now()), body)
		next := l.post("/pushback/p/stripe", stripeSigned(body, l.clock.Now().Add(time.Second)), body)
		if next.body["duplicate"] == true || runID(next) == runID(first) {
			t.Fatalf("a new signing: %s; want a new run", next.raw)
		}
	})
	t.Run("a replay is refused for as long as its timestamp passes", func(t *testing.T) {
		l := startLive(t)
		msg := stripeSigned(body, l.clock.Now().Add(5*time.Minute-time.Second))
		l.post("/pushback/p/stripe", msg, body)
		l.clock.Advance(10*time.Minute - 2*time.Second)
		if again := l.post("/pushback/p/stripe", msg, body); again.body["duplicate"] != true {
			t.Fatalf("a replay 9m58s later: %s; want a duplicate", again.raw)
		}
		l.clock.Advance(3 * time.Second)
		h := &harness{srv: l.srv}
		if late := h.post(t, "/pushback/p/stripe", msg, []byte(body)); late.code != http.StatusUnauthorized {
			t.Fatalf("past twice the tolerance: %d %s; want 401 (expired)", late.code, late.raw)
		}
	})
}

func TestStandardWebhooksMessagesAreNotReplayed(t *testing.T) {
	const body = `{"eventId":"E-1"}`
	t.Run("three posts of one message make one run", func(t *testing.T) {
		l := startLive(t)
		msg := signed(t, body, "msg_1", l.clock.Now())
		first := l.post("/pushback/p/hooks", msg, body)
		for i := 0; i < 2; i++ {
			again := l.post("/pushback/p/hooks", msg, body)
			if again.body["duplicate"] != true || runID(again) != runID(first) {
				t.Fatalf("replay %d: %s; want a duplicate of %s", i+1, again.raw, runID(first))
			}
		}
		if n := l.runs("hooks"); n != 1 {
			t.Fatalf("%d runs, want 1", n)
		}
	})

	t.Run("a restart between posts still refuses the replay", func(t *testing.T) {
		l := startLive(t)
		msg := signed(t, body, "msg_1", l.clock.Now())
		first := l.post("/pushback/p/hooks", msg, body)
		l.restart()
		l.clock.Advance(time.Minute)
		again := l.post("/pushback/p/hooks", msg, body)
		if again.body["duplicate"] != true || runID(again) != runID(first) {
			t.Fatalf("after a restart: %s; want a duplicate of %s", again.raw, runID(first))
		}
		if n := l.runs("hooks"); n != 1 {
			t.Fatalf("%d runs, want 1", n)
		}
	})

	t.Run("a replay is refused for twice the tolerance and a resend after that runs", func(t *testing.T) {
		l := startLive(t)
		// The sender's clock runs almost a tolerance (5m) ahead: its message stays
		// acceptable for almost twice the tolerance after it arrives.
		msg := signed(t, body, "msg_1", l.clock.Now().Add(5*time.Minute-time.Second))
		first := l.post("/pushback/p/hooks", msg, body)
		l.clock.Advance(10*time.Minute - 2*time.Second)
		again := l.post("/pushback/p/hooks", msg, body)
		if again.body["duplicate"] != true {
			t.Fatalf("a replay 9m58s later: %s; want a duplicate", again.raw)
		}
		l.clock.Advance(3 * time.Second) // now past twice the tolerance
		if _, err := l.st.Prune(context.Background(), time.Time{}, 0); err != nil {
			t.Fatal(err)
		}
		resend := l.post("/pushback/p/hooks", signed(t, body, "msg_1", l.clock.Now()), body)
		if resend.body["duplicate"] == true || runID(resend) == runID(first) {
			t.Fatalf("a resend after twice the tolerance: %s; want a new run", resend.raw)
		}
	})

	t.Run("fifty concurrent posts of one message make one run", func(t *testing.T) {
		l := startLive(t)
		msg := signed(t, body, "msg_1", l.clock.Now())
		var mu sync.Mutex
		ids, dups := map[string]int{}, 0
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := &harness{srv: l.srv}
				req, _ := http.NewRequest(http.MethodPost, l.srv.URL+"/pushback/p/hooks", bytes.NewReader([]byte(body)))
				for k, v := range msg {
					req.Header.Set(k, v)
				}
				a := h.do(t, req)
				mu.Lock()
				defer mu.Unlock()
				ids[runID(a)]++
				if a.body["duplicate"] == true {
					dups++
				}
			}()
		}
		wg.Wait()
		if len(ids) != 1 || dups != 49 {
			t.Fatalf("run ids %v, %d duplicates; want one id and 49 duplicates", ids, dups)
		}
		if n := l.runs("hooks"); n != 1 {
			t.Fatalf("%d runs, want 1", n)
		}
	})

	t.Run("with an idempotency key on the endpoint either key makes a duplicate", func(t *testing.T) {
		l := startLive(t)
		now := l.clock.Now()
		first := l.post("/pushback/p/hooks-keyed", signed(t, `{"eventId":"E-1"}`, "msg_1", now), `{"eventId":"E-1"}`)
		for _, c := range []struct{ name, body, msgID string }{
			{"the same event in a new message", `{"eventId":"E-1"}`, "msg_2"},
			{"the same message id over another event", `{"eventId":"E-2"}`, "msg_1"},
		} {
			a := l.post("/pushback/p/hooks-keyed", signed(t, c.body, c.msgID, now), c.body)
			if a.body["duplicate"] != true || runID(a) != runID(first) {
				t.Errorf("%s: %s; want a duplicate of %s", c.name, a.raw, runID(first))
			}
		}
		fresh := l.post("/pushback/p/hooks-keyed", signed(t, `{"eventId":"E-2"}`, "msg_2", now), `{"eventId":"E-2"}`)
		if fresh.body["duplicate"] == true {
			t.Fatalf("a new event in a new message: %s; want a new run (a duplicate claims no key)", fresh.raw)
		}
	})

	t.Run("a message id is its endpoint's own", func(t *testing.T) {
		l := startLive(t)
		msg := signed(t, body, "msg_1", l.clock.Now())
		first := l.post("/pushback/p/hooks", msg, body)
		other := l.post("/pushback/p/east/hooks", msg, body)
		if other.body["duplicate"] == true || runID(other) == runID(first) {
			t.Fatalf("the same message at another site's endpoint: %s; want its own run", other.raw)
		}
	})
}
