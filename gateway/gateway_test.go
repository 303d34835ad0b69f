package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/internal/sigfixtures"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
)

// fakeRuns stands in for the dispatcher: it records what the gateway hands over and answers
// as told.
type fakeRuns struct {
	mu     sync.Mutex
	got    []*saga.Invocation
	runs   []*store.Run
	result saga.Result
	delay  time.Duration
	dupOf  string
	err    error
	// entered, when set, hears of each RunSync before it waits for release.
	entered chan struct{}
	release chan struct{}
}

func (f *fakeRuns) record(run *store.Run, inv *saga.Invocation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, inv)
	f.runs = append(f.runs, run)
}

func (f *fakeRuns) Accept(_ context.Context, run *store.Run, inv *saga.Invocation, _ store.CreateOptions) (string, error) {
	f.record(run, inv)
	return f.dupOf, f.err
}

func (f *fakeRuns) RunSync(_ context.Context, run *store.Run, inv *saga.Invocation, _ store.CreateOptions) (*saga.Result, string, error) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.entered != nil && inv.Endpoint == "narrow" {
		f.entered <- struct{}{}
		<-f.release
	}
	f.record(run, inv)
	r := f.result
	return &r, f.dupOf, f.err
}

func (f *fakeRuns) last(t *testing.T) *saga.Invocation {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("no run was handed over")
	}
	return f.got[len(f.got)-1]
}

func (f *fakeRuns) lastRun(t *testing.T) *store.Run {
	t.Helper()
	f.last(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[len(f.runs)-1]
}

func (f *fakeRuns) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

type staticConfig struct{ cfg *config.Config }

func (s staticConfig) Current() *config.Config { return s.cfg }

// The standard-webhooks fixture was signed at this Unix time (the specification's example).
const fixtureTimestamp = 1614265330

type harness struct {
	srv    *httptest.Server
	runner *fakeRuns
	logs   *observer.ObservedLogs
	cfg    *config.Config
}

func newHarness(t *testing.T, tweak func(*config.Config)) *harness {
	t.Helper()
	cfg, err := config.Load("testdata/config/pushbackd.yaml")
	if err != nil {
		t.Fatalf("load test config: %v", err)
	}
	if tweak != nil {
		tweak(cfg)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	runner := &fakeRuns{result: saga.Result{Status: "succeeded"}}
	clients, _ := NewFailureLimiters(cfg.Server.Limits.AuthFailures)
	gw := New(Options{Config: staticConfig{cfg}, Runs: runner, Logger: zap.New(core), ClientLimiter: clients,
		Now: func() time.Time { return time.Unix(fixtureTimestamp+60, 0) }})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return &harness{srv: srv, runner: runner, logs: logs, cfg: cfg}
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) post(t *testing.T, path string, headers map[string]string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header[k] = []string{v} // as given: tests send odd-case names on purpose
	}
	return h.do(t, req)
}

func (h *harness) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("answer is not JSON: %q", raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	return a
}

// rawRequest sends bytes exactly as written, so paths are not cleaned or re-escaped by a
// client library.
func (h *harness) rawRequest(t *testing.T, request string) int {
	t.Helper()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

const fixtureDir = "../testdata/signatures"

func loadFixtures(t *testing.T) []sigfixtures.Fixture {
	t.Helper()
	fx, err := sigfixtures.Load(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func fixtureBody(t *testing.T, file string) []byte {
	t.Helper()
	b, err := sigfixtures.Body(fixtureDir, file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignaturesComputedByOpenSSLAreAccepted(t *testing.T) {
	h := newHarness(t, nil)
	files := map[string]bool{"encompass-milestone.json": true, "utf8.json": true, "empty.txt": true}
	checked := 0
	for _, f := range loadFixtures(t) {
		if !files[f.File] {
			continue
		}
		body := fixtureBody(t, f.File)
		var path string
		headers := map[string]string{"Content-Type": "text/plain"}
		switch f.Kind {
		case "base64":
			path, headers["Elli-Signature"] = "/pushback/acme/encompass", f.Value
		case "hex-prefixed":
			if f.Key != "encompass-signing-key-0001" {
				continue
			}
			path, headers["Pushback-Signature"] = "/pushback/acme/hexsig", f.Value
		default:
			continue
		}
		t.Run(f.File+" "+f.Kind+" "+f.Key, func(t *testing.T) {
			a := h.post(t, path, headers, body)
			if a.code != 200 {
				t.Fatalf("got %d %s, want 200", a.code, a.raw)
			}
			if got := h.runner.last(t).Request.Raw; !bytes.Equal(got, body) {
				t.Errorf("the saga got %d bytes, want the %d received", len(got), len(body))
			}
		})
		checked++
	}
	if checked < 8 {
		t.Fatalf("only %d fixtures exercised; expected.tsv is missing rows", checked)
	}
}

func TestStandardWebhooksFixtureIsAccepted(t *testing.T) {
	h := newHarness(t, nil)
	for _, f := range loadFixtures(t) {
		if f.Kind != "standard_webhooks" || f.File != "svix-example.json" {
			continue
		}
		a := h.post(t, "/pushback/acme/webhooks", map[string]string{
			"Webhook-Id": f.MsgID, "Webhook-Timestamp": f.Timestamp, "Webhook-Signature": "v1,bm9wZQ== " + f.Value,
			"Content-Type": "application/json",
		}, fixtureBody(t, f.File))
		if a.code != 200 {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
		return
	}
	t.Fatal("no standard_webhooks fixture for svix-example.json")
}

// webhookHeaders signs body correctly but at the gateway's clock shifted by skew.
func webhookHeaders(t *testing.T, body []byte, skew time.Duration) map[string]string {
	t.Helper()
	cfg := security.Config{Method: security.StandardWebhooks, Secrets: []security.Secret{security.NewSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")}}
	h, _, err := security.Sign(cfg, body, "msg_skewed", time.Unix(fixtureTimestamp+60, 0).Add(skew))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k := range h {
		out[k] = h.Get(k)
	}
	return out
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestBadCredentialsAllGetTheSameUnauthorizedAnswer(t *testing.T) {
	h := newHarness(t, nil)
	body := fixtureBody(t, "encompass-milestone.json")
	var goodSig, goodHex string
	for _, f := range loadFixtures(t) {
		if f.File == "encompass-milestone.json" && f.Key == "encompass-signing-key-0001" {
			switch f.Kind {
			case "base64":
				goodSig = f.Value
			case "hex":
				goodHex = f.Value
			}
		}
	}
	otherBody := fixtureBody(t, "utf8.json")
	ts := fmt.Sprint(fixtureTimestamp)
	cases := []struct {
		name    string
		path    string
		headers map[string]string
		body    []byte
		reason  string
	}{
		{"no auth header at all", "/pushback/acme/basic", nil, body, "missing"},
		{"a Bearer token sent to a basic endpoint", "/pushback/acme/basic", map[string]string{"Authorization": "Bearer abc"}, body, "malformed"},
		{"Basic with invalid base64", "/pushback/acme/basic", map[string]string{"Authorization": "Basic !!!not-base64"}, body, "malformed"},
		{"Basic with the wrong password", "/pushback/acme/basic", map[string]string{"Authorization": basicAuth("snapdocs", "pa:ss")}, body, "mismatch"},
		{"the partner's basic credentials on the site's own endpoint", "/pushback/acme/retail/basic", map[string]string{"Authorization": basicAuth("snapdocs", "pa:ss:word")}, body, "mismatch"},
		{"the signature of a different body", "/pushback/acme/encompass", map[string]string{"Elli-Signature": goodSig}, otherBody, "mismatch"},
		{"a truncated signature", "/pushback/acme/encompass", map[string]string{"Elli-Signature": goodSig[:20]}, body, ""},
		{"a hex signature on a base64 endpoint", "/pushback/acme/encompass", map[string]string{"Elli-Signature": goodHex}, body, ""},
		{"a base64 signature on a hex endpoint", "/pushback/acme/hexsig", map[string]string{"Pushback-Signature": goodSig}, body, "malformed"},
		{"a token without its secret", "/pushback/acme/token", map[string]string{"Access-Token": "tok"}, body, "missing"},
		{"a wrong access secret", "/pushback/acme/token", map[string]string{"Access-Token": "tok", "Access-Secret": "nope"}, body, "mismatch"},
		{"a standard-webhooks timestamp 6 minutes old", "/pushback/acme/webhooks", webhookHeaders(t, body, -6*time.Minute), body, "expired"},
		{"a standard-webhooks timestamp 6 minutes ahead", "/pushback/acme/webhooks", webhookHeaders(t, body, 6*time.Minute), body, "expired"},
		{"a standard-webhooks signature that does not match", "/pushback/acme/webhooks", map[string]string{"Webhook-Id": "msg_1", "Webhook-Timestamp": ts, "Webhook-Signature": "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32))}, body, "mismatch"},
		{"an api key in the wrong query parameter", "/pushback/acme/apikey?api_key=k1", nil, body, "missing"},
		{"a wrong bearer token", "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b2"}, body, "mismatch"},
		{"a right token from an address outside allow_ips", "/pushback/acme/office", map[string]string{"Authorization": "Bearer b1"}, body, "ip_not_allowed"},
	}
	var first string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.runner.calls()
			a := h.post(t, tc.path, tc.headers, tc.body)
			if a.code != http.StatusUnauthorized {
				t.Fatalf("got %d %s, want 401", a.code, a.raw)
			}
			if first == "" {
				first = a.raw
			} else if a.raw != first {
				t.Errorf("401 body %q differs from %q: failures must be indistinguishable", a.raw, first)
			}
			if h.runner.calls() != before {
				t.Error("the saga ran for an unauthenticated request")
			}
			entries := h.logs.FilterMessage("authentication failed").All()
			if len(entries) == 0 {
				t.Fatal("no log line for the failure")
			}
			fields := entries[len(entries)-1].ContextMap()
			if tc.reason != "" && fields["reason"] != tc.reason {
				t.Errorf("logged reason %v, want %s", fields["reason"], tc.reason)
			}
			for _, k := range []string{"partner", "endpoint", "method", "request_id"} {
				if fields[k] == "" || fields[k] == nil {
					t.Errorf("log line lacks %s: %v", k, fields)
				}
			}
			line := fmt.Sprint(fields)
			for _, v := range tc.headers {
				if len(v) > 3 && strings.Contains(line, v) {
					t.Errorf("log line contains a credential %q: %s", v, line)
				}
			}
		})
	}
	if got := h.post(t, "/pushback/acme/basic", nil, nil).header.Get("WWW-Authenticate"); got != `Basic realm="pushbackd"` {
		t.Errorf("basic 401 WWW-Authenticate = %q", got)
	}
}

func TestGoodCredentialsReachTheSaga(t *testing.T) {
	h := newHarness(t, nil)
	body := []byte(`{"eventType":"milestone"}`)
	cases := []struct {
		name    string
		path    string
		headers map[string]string
	}{
		{"basic with a password containing colons", "/pushback/acme/basic", map[string]string{"Authorization": basicAuth("snapdocs", "pa:ss:word")}},
		{"basic with the scheme in upper case", "/pushback/acme/basic", map[string]string{"Authorization": strings.Replace(basicAuth("snapdocs", "pa:ss:word"), "Basic", "BASIC", 1)}},
		{"the site's own basic credentials", "/pushback/acme/retail/basic", map[string]string{"Authorization": basicAuth("retail", "retail-pass")}},
		{"token headers in odd case", "/pushback/acme/token", map[string]string{"aCCESS-tOKEN": "tok", "ACCESS-SECRET": "sec"}},
		{"token headers with their CGI names", "/pushback/acme/token", map[string]string{"HTTP_ACCESS_TOKEN": "tok", "HTTP_ACCESS_SECRET": "sec"}},
		{"an api key in the query", "/pushback/acme/apikey?key=k1", nil},
		{"a bearer token", "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.headers = withHeader(tc.headers, "Content-Type", "application/json")
			if a := h.post(t, tc.path, tc.headers, body); a.code != 200 {
				t.Fatalf("got %d %s", a.code, a.raw)
			}
		})
	}
}

func withHeader(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

func TestTheSagaGetsTheVerifiedRequest(t *testing.T) {
	h := newHarness(t, nil)
	body := []byte(`{"eventId":"e-1","meta":{"resourceId":"r-9"},"amount":12.5}`)
	a := h.post(t, "/pushback/acme/retail/bearer?x=1", map[string]string{"Authorization": "Bearer b1", "Content-Type": "application/json; charset=utf-8"}, body)
	if a.code != 200 || a.body["run_id"] == "" || a.body["status"] != "OK" {
		t.Fatalf("got %d %s", a.code, a.raw)
	}
	inv := h.runner.last(t)
	if inv.Partner.ID != "acme" || inv.Partner.Name != "Acme Lending" || inv.Site == nil || inv.Site.ID != "retail" || inv.Endpoint != "bearer" {
		t.Errorf("scope = %+v site %+v endpoint %s", inv.Partner, inv.Site, inv.Endpoint)
	}
	if inv.Saga == nil || inv.Saga.Name != "echo" {
		t.Errorf("saga = %+v", inv.Saga)
	}
	if inv.Settings["region"] != "east" {
		t.Errorf("site settings must override the partner's: %v", inv.Settings)
	}
	if inv.Secrets["crm_token"].IsZero() {
		t.Error("partner secrets not passed to the saga")
	}
	m, _ := inv.Request.Body.(map[string]any)
	if m["eventId"] != "e-1" || m["amount"] != 12.5 {
		t.Errorf("parsed body = %#v", inv.Request.Body)
	}
	if inv.Request.Query.Get("x") != "1" || inv.Request.RemoteIP != "127.0.0.1" || inv.RunID != a.body["run_id"] {
		t.Errorf("request = %+v", inv.Request)
	}
}

func TestRoutingAndRequestProblems(t *testing.T) {
	h := newHarness(t, nil)
	bearer := map[string]string{"Authorization": "Bearer b1", "Content-Type": "application/json"}
	cases := []struct {
		name    string
		path    string
		headers map[string]string
		body    []byte
		code    int
		message string
	}{
		{"an unknown partner", "/pushback/nobody/bearer", bearer, nil, 404, "no such pushback endpoint"},
		{"an unknown site", "/pushback/acme/wholesale/bearer", bearer, nil, 404, ""},
		{"an unknown endpoint", "/pushback/acme/nothing", bearer, nil, 404, ""},
		{"a path outside /pushback", "/other", bearer, nil, 404, ""},
		{"too many segments", "/pushback/acme/retail/bearer/x", bearer, nil, 404, ""},
		{"malformed JSON with valid credentials", "/pushback/acme/bearer", bearer, []byte(`{"a":`), 400, "invalid JSON"},
		{"JSON with trailing garbage", "/pushback/acme/bearer", bearer, []byte(`{"a":1} x`), 400, "invalid JSON"},
		{"malformed XML with valid credentials", "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b1", "Content-Type": "text/xml"}, []byte(`<a><b></a>`), 400, "invalid XML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := h.post(t, tc.path, tc.headers, tc.body)
			if a.code != tc.code || !strings.Contains(a.raw, tc.message) {
				t.Fatalf("got %d %s, want %d containing %q", a.code, a.raw, tc.code, tc.message)
			}
			if a.body["code"] != float64(tc.code) {
				t.Errorf("code field = %v", a.body["code"])
			}
		})
	}
	t.Run("a GET is not allowed", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/pushback/acme/bearer", nil)
		a := h.do(t, req)
		if a.code != 405 || a.header.Get("Allow") != "POST" {
			t.Fatalf("got %d Allow=%q", a.code, a.header.Get("Allow"))
		}
	})
	for _, p := range []string{
		"/pushback/acme/../acme/bearer",
		"/pushback/acme/%2e%2e/bearer",
		"/pushback/acme%2Fretail/bearer",
		"/pushback/acme/retail%2Fbearer",
		"/pushback/ACME/bearer",
		"/pushback/acme/Bearer",
		"/pushback/acme//bearer",
		"/pushback/acme/bearer/",
	} {
		t.Run("the path "+p+" is not found", func(t *testing.T) {
			code := h.rawRequest(t, "POST "+p+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer b1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			if code != 404 {
				t.Fatalf("got %d, want 404", code)
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	h := newHarness(t, nil)
	limit := int(h.cfg.Server.Limits.MaxBodyBytes)
	bearer := map[string]string{"Authorization": "Bearer b1"}
	t.Run("a body exactly at the limit is accepted", func(t *testing.T) {
		if a := h.post(t, "/pushback/acme/bearer", bearer, bytes.Repeat([]byte("a"), limit)); a.code != 200 {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("one byte over the limit is 413", func(t *testing.T) {
		if a := h.post(t, "/pushback/acme/bearer", bearer, bytes.Repeat([]byte("a"), limit+1)); a.code != 413 {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("one byte over the limit without Content-Length is 413", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/pushback/acme/bearer", io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("a"), limit)), strings.NewReader("b")))
		req.Header.Set("Authorization", "Bearer b1")
		req.ContentLength = -1 // chunked
		if a := h.do(t, req); a.code != 413 {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("a Content-Length over the limit is refused before reading", func(t *testing.T) {
		code := h.rawRequest(t, fmt.Sprintf("POST /pushback/acme/bearer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer b1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", limit+1))
		if code != 413 {
			t.Fatalf("got %d", code)
		}
	})
}

func TestSyncAnswers(t *testing.T) {
	bearer := map[string]string{"Authorization": "Bearer b1", "Content-Type": "application/json"}
	t.Run("a respond step decides status, headers and body", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.result = saga.Result{Status: "succeeded", Answer: &saga.Answer{Status: 202, Headers: map[string]string{"X-Loan": "42"}, Body: map[string]any{"ignored": true}}}
		a := h.post(t, "/pushback/acme/bearer", bearer, []byte(`{}`))
		if a.code != 202 || a.header.Get("X-Loan") != "42" || a.body["ignored"] != true {
			t.Fatalf("got %d %v %s", a.code, a.header, a.raw)
		}
	})
	t.Run("a respond step without a body gets the usual shape", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.result = saga.Result{Status: "succeeded", Answer: &saga.Answer{Status: 201}}
		a := h.post(t, "/pushback/acme/bearer", bearer, []byte(`{}`))
		if a.code != 201 || a.body["code"] != float64(201) || a.body["run_id"] == "" {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("a failed saga answers 502 with the sender's message, not the run's error", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.result = saga.Result{Status: "failed", Error: "fetch_loan: GET http://10.1.2.3:8080/loans: unexpected status 500: db down",
			SenderError: "step fetch_loan failed: the downstream call failed"}
		a := h.post(t, "/pushback/acme/bearer", bearer, []byte(`{}`))
		if a.code != 502 || a.body["message"] != "step fetch_loan failed: the downstream call failed" || a.body["run_id"] == "" {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("a run that failed outside any step answers 502 naming only the saga", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.result = saga.Result{Status: "failed", Error: "saga echo changed since the run was checkpointed"}
		a := h.post(t, "/pushback/acme/bearer", bearer, []byte(`{}`))
		if msg, _ := a.body["message"].(string); a.code != 502 || !strings.HasPrefix(msg, "saga ") || !strings.HasSuffix(msg, " failed") || strings.Contains(msg, "checkpoint") {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("a saga slower than sync_timeout answers 504 and keeps running", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config) { c.Server.Limits.SyncTimeout = 20 * time.Millisecond })
		h.runner.delay = 200 * time.Millisecond
		a := h.post(t, "/pushback/acme/bearer", bearer, []byte(`{}`))
		if a.code != 504 || a.body["run_id"] == "" {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
		deadline := time.Now().Add(5 * time.Second)
		for h.runner.calls() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if h.runner.calls() != 1 {
			t.Fatal("the saga did not finish after the sender was answered")
		}
	})
}

func TestTrustedProxyHeaderDecidesTheClientAddress(t *testing.T) {
	withProxy := func(c *config.Config) {
		c.Server.Proxy.Header = "X-Forwarded-For"
		c.Server.Proxy.TrustedPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	cases := []struct {
		name  string
		tweak func(*config.Config)
		xff   string
		code  int
	}{
		{"a client inside allow_ips behind a trusted proxy", withProxy, "10.1.2.3", 200},
		{"a client outside allow_ips behind a trusted proxy", withProxy, "192.0.2.1", 401},
		{"a spoofed left-most address is ignored", withProxy, "10.1.2.3, 192.0.2.1", 401},
		{"the header from an untrusted peer is ignored", nil, "10.1.2.3", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.tweak)
			a := h.post(t, "/pushback/acme/office", map[string]string{"Authorization": "Bearer b1", "X-Forwarded-For": tc.xff}, nil)
			if a.code != tc.code {
				t.Fatalf("got %d %s", a.code, a.raw)
			}
		})
	}
}

func TestRequestIDIsEchoedOrMade(t *testing.T) {
	h := newHarness(t, nil)
	a := h.post(t, "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b1", "X-Request-Id": "abc-123"}, nil)
	if a.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("sender's request id not kept: %q", a.header.Get("X-Request-Id"))
	}
	a = h.post(t, "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b1", "X-Request-Id": "bad id\twith junk"}, nil)
	if id := a.header.Get("X-Request-Id"); id == "" || strings.ContainsAny(id, " \t") {
		t.Errorf("unsafe request id echoed: %q", id)
	}
}

func TestA1MiBBodySignedByOpenSSLIsAccepted(t *testing.T) {
	h := newHarness(t, nil)
	for _, f := range loadFixtures(t) {
		if f.File != "one-mib.bin" || f.Kind != "base64" || f.Key != "encompass-signing-key-0001" {
			continue
		}
		body := fixtureBody(t, f.File)
		a := h.post(t, "/pushback/acme/encompass", map[string]string{"Elli-Signature": f.Value, "Content-Type": "application/octet-stream"}, body)
		if a.code != 200 {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
		if got := h.runner.last(t).Request.Raw; !bytes.Equal(got, body) {
			t.Fatal("the saga did not get the exact bytes")
		}
		return
	}
	t.Fatal("no one-mib.bin fixture in expected.tsv")
}

func TestAsyncAccepts(t *testing.T) {
	bearer := map[string]string{"Authorization": "Bearer b1", "Content-Type": "application/json"}
	t.Run("an accepted run answers with its id once recorded", func(t *testing.T) {
		h := newHarness(t, nil)
		a := h.post(t, "/pushback/acme/queued?x=1", bearer, []byte(`{"eventId":"e-1"}`))
		run := h.runner.lastRun(t)
		if a.code != 200 || a.body["message"] != "accepted" || a.body["run_id"] != run.ID {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
		if run.Partner != "acme" || run.Endpoint != "queued" || run.Saga != "echo" || run.SagaVersion == "" || run.Answer == nil || run.Answer.Status != 200 {
			t.Errorf("recorded run = %+v", run)
		}
		if string(run.Request.Body) != `{"eventId":"e-1"}` || run.Request.Query != "x=1" || run.Request.ContentType != "application/json" {
			t.Errorf("recorded request = %+v", run.Request)
		}
		if got := run.Request.Headers["Authorization"]; len(got) != 1 || got[0] != security.Redacted {
			t.Errorf("recorded Authorization = %v, want it redacted", got)
		}
	})
	t.Run("a duplicate answers 200 with the original run id", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.dupOf = "0190aaaa-0000-7000-8000-000000000001"
		a := h.post(t, "/pushback/acme/queued", bearer, []byte(`{}`))
		if a.code != 200 || a.body["duplicate"] != true || a.body["run_id"] != h.runner.dupOf {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("a full queue answers 503 with Retry-After", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.err = dispatch.ErrQueueFull
		a := h.post(t, "/pushback/acme/queued", bearer, []byte(`{}`))
		if a.code != 503 || a.header.Get("Retry-After") == "" {
			t.Fatalf("got %d %v %s", a.code, a.header, a.raw)
		}
	})
	t.Run("a storage failure answers 503 and says nothing was recorded", func(t *testing.T) {
		h := newHarness(t, nil)
		h.runner.err = fmt.Errorf("write: %w", store.ErrUnavailable)
		a := h.post(t, "/pushback/acme/queued", bearer, []byte(`{}`))
		if a.code != 503 || !strings.Contains(a.raw, "nothing was recorded") || a.header.Get("Retry-After") == "" {
			t.Fatalf("got %d %s", a.code, a.raw)
		}
	})
	t.Run("the idempotency key is rendered and scoped to partner, site and endpoint", func(t *testing.T) {
		h := newHarness(t, nil)
		for path, want := range map[string]string{
			"/pushback/acme/retail/queued": "acme/retail/queued/e-9", // inherited by the site
			"/pushback/acme/queued":        "acme//queued/e-9",
		} {
			h.post(t, path, bearer, []byte(`{"eventId":"e-9"}`))
			if got := h.runner.lastRun(t).IdempotencyKey; got != want {
				t.Errorf("%s: idempotency key = %q, want %q", path, got, want)
			}
		}
		h.post(t, "/pushback/acme/queued", bearer, []byte(`{"other":1}`))
		if got := h.runner.lastRun(t).IdempotencyKey; got != "" {
			t.Errorf("a body without the key's field got key %q; it should run without one", got)
		}
	})
}

func TestMaxInFlightRefusesTheExcessWith429(t *testing.T) {
	h := newHarness(t, nil)
	h.runner.entered, h.runner.release = make(chan struct{}, 10), make(chan struct{})
	bearer := map[string]string{"Authorization": "Bearer b1"}
	first := make(chan answer, 1)
	go func() { first <- h.post(t, "/pushback/acme/narrow", bearer, nil) }()
	<-h.runner.entered // the first request now holds the endpoint's only slot
	a := h.post(t, "/pushback/acme/narrow", bearer, nil)
	if a.code != 429 || a.header.Get("Retry-After") == "" {
		t.Fatalf("second request: %d %v, want 429 with Retry-After", a.code, a.header)
	}
	if a := h.post(t, "/pushback/acme/bearer", bearer, nil); a.code != 200 {
		t.Fatalf("another endpoint is not limited: %d", a.code)
	}
	close(h.runner.release)
	if a := <-first; a.code != 200 {
		t.Fatalf("the request in flight: %d", a.code)
	}
	if a := h.post(t, "/pushback/acme/narrow", bearer, nil); a.code != 200 {
		t.Fatalf("after the first finished: %d", a.code)
	}
}

func TestFailedAuthenticationsAreRateLimited(t *testing.T) {
	t.Run("per client: past the budget even a right credential waits", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config) {
			c.Server.Limits.AuthFailures = config.AuthFailures{PerClient: 3, PerEndpoint: 1000, Window: time.Hour}
		})
		wrong := map[string]string{"Authorization": "Bearer nope"}
		var bodies []string
		for i := range 3 {
			a := h.post(t, "/pushback/acme/bearer", wrong, nil)
			if a.code != 401 {
				t.Fatalf("failure %d: %d", i+1, a.code)
			}
			bodies = append(bodies, a.raw)
		}
		a := h.post(t, "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b1"}, nil)
		if a.code != 429 || a.header.Get("Retry-After") == "" || strings.Contains(a.raw, "b1") {
			t.Fatalf("after the budget: %d %v %s", a.code, a.header, a.raw)
		}
		if h.runner.calls() != 0 {
			t.Error("a blocked client's request ran a saga")
		}
		if !strings.Contains(fmt.Sprint(h.logs.FilterMessage("client out of authentication tries; refusing").All()), "127.0.0.1") {
			t.Error("the refusal is not logged with the client address")
		}
	})
	t.Run("per endpoint: failures past the budget answer 429, the right credential still passes", func(t *testing.T) {
		h := newHarness(t, func(c *config.Config) {
			c.Server.Limits.AuthFailures = config.AuthFailures{PerClient: 0, PerEndpoint: 2, Window: time.Hour}
		})
		wrong := map[string]string{"Authorization": "Bearer nope"}
		codes := []int{}
		for range 3 {
			codes = append(codes, h.post(t, "/pushback/acme/bearer", wrong, nil).code)
		}
		if fmt.Sprint(codes) != "[401 429 429]" {
			t.Errorf("codes %v, want [401 429 429]", codes)
		}
		if a := h.post(t, "/pushback/acme/bearer", map[string]string{"Authorization": "Bearer b1"}, nil); a.code != 200 {
			t.Errorf("a right credential on a throttled endpoint: %d", a.code)
		}
		if a := h.post(t, "/pushback/acme/token", map[string]string{"Access-Token": "x", "Access-Secret": "y"}, nil); a.code != 401 {
			t.Errorf("another endpoint's budget was spent too: %d", a.code)
		}
	})
}
