package saga

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/security"
)

// downstream is a test server standing in for a CRM or LOS.
func downstream(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("X-Seen", "yes")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "query": r.URL.RawQuery, "body": string(b),
			"content_type": r.Header.Get("Content-Type"), "auth": r.Header.Get("Authorization"),
			"custom": r.Header.Get("X-Custom"), "id": 42,
		})
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "status "+r.PathValue("code"))
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "plain words")
	})
	mux.HandleFunc("/badjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{not json")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat("x", 64<<10))
		for i := 0; i < 160; i++ { // 10 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

// runHTTP runs a one-step saga whose step is `http: <spec>` (plus extra step keys) against
// the test server, found in settings.base.
func runHTTP(t *testing.T, base, spec string, mod ...func(*EngineOptions)) (*Result, *fakeClock) {
	t.Helper()
	s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n"+spec)
	e, clock, _ := testEngine(t, mod...)
	inv := invocation(s, map[string]any{"id": "L-1", "n": 3})
	inv.Settings = map[string]any{"base": base}
	return e.Run(context.Background(), inv), clock
}

func TestHTTPSteps(t *testing.T) {
	srv, hits := downstream(t)

	t.Run("headers, query and a JSON body are sent and a JSON answer is parsed", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, `
    http:
      method: put
      url: ${ settings.base }/echo?fixed=1
      headers: {X-Custom: "loan ${ body.id }", Authorization: Bearer abc}
      query: {loan: "${ body.id }", tag: [a, b], skip: "${ nil }"}
      json: {loan: "${ body.id }", n: "${ body.n }"}
`)
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		out := res.Steps[0].Output.(map[string]any)
		body := out["body"].(map[string]any)
		want := map[string]any{
			"method": "PUT", "query": "fixed=1&loan=L-1&tag=a&tag=b", "body": `{"loan":"L-1","n":3}`,
			// The server echoed the Authorization header it got; the record scrubs the echo
			// of a credential header's value (runState.conceal).
			"content_type": "application/json", "auth": redacted, "custom": "loan L-1", "id": float64(42),
		}
		if !reflect.DeepEqual(body, want) {
			t.Errorf("server saw %v\nwant        %v", body, want)
		}
		if out["status"] != 200 || out["headers"].(map[string]string)["x-seen"] != "yes" {
			t.Errorf("output status %v headers %v", out["status"], out["headers"])
		}
		in := res.Steps[0].Input.(map[string]any)
		if in["method"] != "PUT" || in["url"] != srv.URL+"/echo?fixed=1" || in["headers"].(map[string]string)["Authorization"] != security.Redacted {
			t.Errorf("recorded input %v", in)
		}
	})

	t.Run("a form body is url-encoded", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, `
    http:
      url: ${ settings.base }/echo
      form: {loan: "${ body.id }", n: "${ body.n }", tags: [x, y]}
`)
		body := res.Steps[0].Output.(map[string]any)["body"].(map[string]any)
		if body["method"] != "POST" || body["body"] != "loan=L-1&n=3&tags=x&tags=y" || body["content_type"] != "application/x-www-form-urlencoded" {
			t.Errorf("server saw %v", body)
		}
	})

	t.Run("a raw body is sent as text", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, `
    http:
      url: ${ settings.base }/echo
      headers: {Content-Type: text/csv}
      body: "a,b\n${ body.id },${ body.n }"
`)
		body := res.Steps[0].Output.(map[string]any)["body"].(map[string]any)
		if body["body"] != "a,b\nL-1,3" || body["content_type"] != "text/csv" {
			t.Errorf("server saw %v", body)
		}
	})

	t.Run("a non-JSON answer is kept as text", func(t *testing.T) {
		for path, want := range map[string]string{"/text": "plain words", "/badjson": "{not json"} {
			res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }"+path+"'}\n")
			if got := res.Steps[0].Output.(map[string]any)["body"]; got != want {
				t.Errorf("%s body = %#v, want %q", path, got, want)
			}
		}
	})

	t.Run("a non-2xx answer fails the step, keeps the answer, and 5xx is retried", func(t *testing.T) {
		hits.Store(0)
		res, clock := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/status/503'}\n    retry: {attempts: 3, backoff: 2s}\n")
		if res.Status != StatusFailed || !strings.Contains(res.Error, "unexpected status 503: status 503") {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		if hits.Load() != 3 || !reflect.DeepEqual(clock.Sleeps(), []time.Duration{2 * time.Second, 4 * time.Second}) {
			t.Errorf("hits %d waits %v", hits.Load(), clock.Sleeps())
		}
		if res.Steps[0].Output.(map[string]any)["status"] != 503 {
			t.Errorf("output %v", res.Steps[0].Output)
		}
	})

	t.Run("a 4xx answer is not retried", func(t *testing.T) {
		hits.Store(0)
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/status/404'}\n    retry: {attempts: 3}\n")
		if res.Status != StatusFailed || hits.Load() != 1 {
			t.Errorf("%s after %d hits", res.Status, hits.Load())
		}
	})

	t.Run("a 429 answer is retried", func(t *testing.T) {
		hits.Store(0)
		runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/status/429'}\n    retry: {attempts: 2}\n")
		if hits.Load() != 2 {
			t.Errorf("%d hits", hits.Load())
		}
	})

	t.Run("expect lists the statuses that count as success", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/status/404', expect: [200, 404]}\n")
		if res.Status != StatusSucceeded {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
		res, _ = runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/status/200', expect: [201]}\n")
		if res.Status != StatusFailed {
			t.Errorf("200 with expect [201]: %s", res.Status)
		}
	})

	t.Run("an http timeout fails the step and says so", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/slow', timeout: 30ms}\n")
		if res.Status != StatusFailed || !strings.Contains(res.Error, "timed out after 30ms") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})

	t.Run("a refused connection fails the step", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		res, _ := runHTTP(t, closed.URL, "    http: {url: '${ settings.base }/x'}\n")
		if res.Status != StatusFailed || !strings.Contains(res.Error, "connection refused") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})

	t.Run("a 10 MiB answer is cut off at the limit and fails the step", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/big'}\n    retry: {attempts: 3}\n")
		if res.Status != StatusFailed || !strings.Contains(res.Error, "answer larger than 1048576 bytes") || res.Steps[0].Attempts != 1 {
			t.Errorf("%s after %d attempts: %s", res.Status, res.Steps[0].Attempts, res.Error)
		}
	})

	t.Run("a link-local address is refused", func(t *testing.T) {
		for _, u := range []string{"http://169.254.169.254/latest/meta-data", "http://[fe80::1]/", "http://[::ffff:169.254.169.254]/"} {
			res, _ := runHTTP(t, u, "    http: {url: '${ settings.base }'}\n")
			if res.Status != StatusFailed || !strings.Contains(res.Error, "egress refused") {
				t.Errorf("%s: %s: %s", u, res.Status, res.Error)
			}
		}
	})

	t.Run("a host outside egress.allow is refused", func(t *testing.T) {
		deny := func(o *EngineOptions) { o.Egress = EgressPolicy{Allow: []string{"*.crm.example"}} }
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/echo'}\n", deny)
		if res.Status != StatusFailed || !strings.Contains(res.Error, "is not in egress.allow") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
		allow := func(o *EngineOptions) { o.Egress = EgressPolicy{Allow: []string{"127.0.0.1:*"}} }
		if res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/echo'}\n", allow); res.Status != StatusSucceeded {
			t.Errorf("allowed host: %s: %s", res.Status, res.Error)
		}
	})

	t.Run("a run's egress lists replace the engine's and must all allow the host", func(t *testing.T) {
		s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n    http: {url: '${ settings.base }/echo'}\n")
		e, _, _ := testEngine(t, func(o *EngineOptions) { o.Egress = EgressPolicy{Allow: []string{"*.crm.example"}} })
		for _, tc := range []struct {
			server, partner []string
			want            string
		}{
			{[]string{"127.0.0.1:*"}, []string{"*.crm.example"}, StatusFailed},
			{[]string{"127.0.0.1:*"}, []string{"127.0.0.1"}, StatusSucceeded},
			{[]string{"*.crm.example"}, []string{"127.0.0.1"}, StatusFailed},
		} {
			inv := invocation(s, nil)
			inv.Settings = map[string]any{"base": srv.URL}
			inv.Egress = []EgressPolicy{{Allow: tc.server}, {Allow: tc.partner, Source: "partner acme"}}
			if res := e.Run(context.Background(), inv); res.Status != tc.want {
				t.Errorf("server allow %v, partner allow %v: %s (%s), want %s", tc.server, tc.partner, res.Status, res.Error, tc.want)
			}
		}
	})

	t.Run("a redirect to a refused address is not followed", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/redirect?to=http://169.254.169.254/'}\n")
		if res.Status != StatusFailed || !strings.Contains(res.Error, "egress refused") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})

	t.Run("a URL that is not absolute http fails without a request", func(t *testing.T) {
		res, _ := runHTTP(t, "file:///etc/passwd", "    http: {url: '${ settings.base }'}\n")
		if res.Status != StatusFailed || !strings.Contains(res.Error, "need an absolute http or https URL") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})

	t.Run("the query string stays out of error messages", func(t *testing.T) {
		res, _ := runHTTP(t, srv.URL, "    http: {url: '${ settings.base }/status/500?api_key=hunter2'}\n")
		if strings.Contains(res.Error, "hunter2") {
			t.Errorf("error %q shows the query", res.Error)
		}
	})
}

// TestConcurrentCallsToOneHostReuseTheirConnections: with IdleConnsPerHost at the number
// of runs calling a host at once, later waves of calls open no new connections (Go's
// default of 2, or our former 10, re-dialled most of them every time).
func TestConcurrentCallsToOneHostReuseTheirConnections(t *testing.T) {
	const concurrent = 24
	var dials atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // so every call of a wave is in flight at once
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := mustParse(t, "call", "name: call\nsteps:\n  - {name: c, http: {url: \""+srv.URL+"\"}}\n")
	e := NewEngine(EngineOptions{IdleConnsPerHost: concurrent, Egress: loopbackOnly})
	for wave := range 3 {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := e.Run(context.Background(), invocation(s, nil)); res.Status != StatusSucceeded {
					t.Errorf("wave %d: %s %s", wave, res.Status, res.Error)
				}
			}()
		}
		wg.Wait()
		// net/http returns a connection to the idle pool from its read loop, just after
		// the caller has the body; leave it that moment before the next wave.
		time.Sleep(50 * time.Millisecond)
	}
	if n := dials.Load(); n > concurrent {
		t.Errorf("%d connections for 3 waves of %d concurrent calls, want at most %d", n, concurrent, concurrent)
	}
}

func TestTheSenderIsToldTheFailingStepAndAGenericReason(t *testing.T) {
	srv, _ := downstream(t)
	cases := []struct {
		name  string
		steps string
		noKV  bool
		want  string
	}{
		{"a downstream error answer", "  - name: fetch\n    http: {url: '${ settings.base }/status/500'}\n",
			false, "step fetch failed: the downstream call failed"},
		{"a request timeout", "  - name: fetch\n    http: {url: '${ settings.base }/slow', timeout: 20ms}\n",
			false, "step fetch failed: timed out"},
		{"a step timeout", "  - name: fetch\n    http: {url: '${ settings.base }/slow'}\n    timeout: 20ms\n",
			false, "step fetch failed: timed out"},
		{"a refused egress", "  - name: fetch\n    http: {url: 'http://169.254.169.254/latest/meta-data'}\n",
			false, "step fetch failed: the downstream call failed"},
		{"an argument that does not evaluate", "  - name: fetch\n    http: {url: '${ settings.base }/echo', json: {n: '${ body.n / 0 + body.x.y.z }'}}\n",
			false, "step fetch failed: an expression could not be evaluated"},
		{"a condition that does not evaluate", "  - name: check\n    when: body.x.y.z == 1\n    set: {a: 1}\n",
			false, "step check failed: an expression could not be evaluated"},
		{"a kv step without a store", "  - name: remember\n    kv: {op: put, key: k, value: v}\n",
			true, "step remember failed: the kv operation failed"},
		{"a fail action, in its author's words", "  - name: check\n    fail: {message: 'loan ${ body.id } is not ours'}\n",
			false, "loan L-1 is not ours"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is told as "+tc.want, func(t *testing.T) {
			s := mustParse(t, "h", "name: h\nsteps:\n"+tc.steps)
			e, _, _ := testEngine(t, func(o *EngineOptions) {
				o.Clock = SystemClock() // real deadlines
				if tc.noKV {
					o.KV = nil
				}
			})
			inv := invocation(s, map[string]any{"id": "L-1", "n": 3})
			inv.Settings = map[string]any{"base": srv.URL}
			res := e.Run(context.Background(), inv)
			if res.Status != StatusFailed || res.SenderError != tc.want {
				t.Errorf("%s: sender told %q, want %q (error %q)", res.Status, res.SenderError, tc.want, res.Error)
			}
			if res.Error == res.SenderError && !strings.HasPrefix(tc.name, "a fail action") {
				t.Errorf("the record's error %q is as vague as the sender's", res.Error)
			}
		})
	}
}
