package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Secrets that pass through a traced run and must appear in no span.
const (
	tracedToken    = "tok-s3cret-bearer-4711"
	tracedBodyMark = "body-s3cret-marker-0815"
	tracedQuery    = "query-s3cret-2342"
	downQuery      = "down-s3cret-query-1701"
	downHeader     = "down-s3cret-header-1864"
)

const tracedPartnerYAML = `id: acme
name: Acme
settings: {down: "DOWNSTREAM"}
endpoints:
  - {name: async, saga: traced, security: {method: bearer, tokens: [{value: TOKEN}]}}
  - {name: sync, saga: traced, mode: sync, security: {method: bearer, tokens: [{value: TOKEN}]}}
`

const tracedSagaYAML = `name: traced
steps:
  - name: call
    http:
      method: POST
      url: "${ settings.down }/ok?api_key=DOWNQUERY"
      headers: {Authorization: "Bearer DOWNHEADER"}
      json: {loan: "${ body.loan }"}
`

// traceDownstream records the traceparent of every call it gets.
type traceDownstream struct {
	mu   sync.Mutex
	seen []string
}

func (d *traceDownstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	d.mu.Lock()
	d.seen = append(d.seen, r.Header.Get("Traceparent"))
	d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"task-1"}`)
}

func (d *traceDownstream) last() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) == 0 {
		return ""
	}
	return d.seen[len(d.seen)-1]
}

func startTracedApp(t *testing.T, tp trace.TracerProvider, log *zap.Logger) (*App, *traceDownstream) {
	t.Helper()
	rec := &traceDownstream{}
	down := httptest.NewServer(rec)
	t.Cleanup(down.Close)
	dir := t.TempDir()
	saga := strings.NewReplacer("DOWNQUERY", downQuery, "DOWNHEADER", downHeader).Replace(tracedSagaYAML)
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml":     "limits: {sync_timeout: 5s, auth_failures: {per_client: 1000}}\ndata_dir: " + filepath.Join(dir, "data") + "\negress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": strings.NewReplacer("DOWNSTREAM", down.URL, "TOKEN", tracedToken).Replace(tracedPartnerYAML),
		"sagas/traced.yaml":  saga,
	})
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: log, Tracing: tp})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a, rec
}

func tracedPost(t *testing.T, a *App, endpoint, token, traceparent string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/"+endpoint+"?key="+tracedQuery,
		strings.NewReader(`{"loan":"`+tracedBodyMark+`"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", traceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := jsonDecode(resp, &out); err != nil {
		t.Fatal(err)
	}
	id, _ := out["run_id"].(string)
	return resp.StatusCode, id
}

// spansOf waits up to wait for n ended spans of trace id.
func spansOf(t *testing.T, exp *tracetest.InMemoryExporter, id trace.TraceID, n int, wait time.Duration) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var got tracetest.SpanStubs
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() == id {
				got = append(got, s)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTracingFollowsAPushbackFromSenderToDownstream(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	core, logs := observer.New(zapcore.InfoLevel)
	a, down := startTracedApp(t, tp, zap.New(core))
	admin := newAdmin(t, a)

	for i, tc := range []struct {
		name, endpoint string
		want           int
	}{
		{"an async pushback's run and step spans continue the sender's trace", "async", http.StatusOK},
		{"a sync pushback's run and step spans continue the sender's trace", "sync", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, byte(i + 1)}
			senderSpan := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, byte(0xb7 + i)}
			code, runID := tracedPost(t, a, tc.endpoint, tracedToken, "00-"+traceID.String()+"-"+senderSpan.String()+"-01")
			if code != tc.want || runID == "" {
				t.Fatalf("answer %d, run %q", code, runID)
			}
			run := finishedRun(t, admin, runID)
			if run["status"] != "succeeded" || run["trace_id"] != traceID.String() {
				t.Fatalf("run record: status %v, trace_id %v; want succeeded, %s", run["status"], run["trace_id"], traceID)
			}
			spans := spansOf(t, exp, traceID, 4, 5*time.Second)
			byKind := map[string]tracetest.SpanStub{}
			for _, s := range spans {
				switch {
				case s.SpanKind == trace.SpanKindServer:
					byKind["request"] = s
				case s.SpanKind == trace.SpanKindClient:
					byKind["http"] = s
				case strings.HasPrefix(s.Name, "run "):
					byKind["run"] = s
				case strings.HasPrefix(s.Name, "step "):
					byKind["step"] = s
				}
			}
			if len(byKind) != 4 || len(spans) != 4 {
				t.Fatalf("want request, run, step and http spans, got %d: %v", len(spans), spanNames(spans))
			}
			for _, link := range []struct{ child, parent string }{{"run", "request"}, {"step", "run"}, {"http", "step"}} {
				c, p := byKind[link.child], byKind[link.parent]
				if c.Parent.SpanID() != p.SpanContext.SpanID() {
					t.Errorf("%s span %q has parent %s, want the %s span %s", link.child, c.Name, c.Parent.SpanID(), link.parent, p.SpanContext.SpanID())
				}
			}
			if got := byKind["request"].Parent; got.SpanID() != senderSpan || !got.IsRemote() {
				t.Errorf("request span's parent is %v, want the sender's span %s", got.SpanID(), senderSpan)
			}
			want := "00-" + traceID.String() + "-" + byKind["http"].SpanContext.SpanID().String() + "-01"
			if got := down.last(); got != want {
				t.Errorf("downstream got traceparent %q, want %q", got, want)
			}
			attrs := map[string]string{}
			for _, kv := range byKind["http"].Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if !strings.HasSuffix(attrs["url.full"], "/ok") || attrs["http.request.method"] != "POST" || attrs["http.response.status_code"] != "200" {
				t.Errorf("http span attributes %v", attrs)
			}
			// The worker logs the outcome after saving it, so the record can be final a moment
			// before the line is written: wait for it.
			found := false
			for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				for _, e := range logs.FilterField(zap.String("run_id", runID)).All() {
					if e.ContextMap()["trace_id"] == traceID.String() {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("no log line of run %s carries trace_id %s", runID, traceID)
			}
		})
	}

	t.Run("an unauthenticated sender's traceparent makes no span", func(t *testing.T) {
		traceID := trace.TraceID{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
		code, _ := tracedPost(t, a, "async", "wrong-token", "00-"+traceID.String()+"-00f067aa0ba902b7-01")
		if code != http.StatusUnauthorized {
			t.Fatalf("answer %d, want 401", code)
		}
		if spans := spansOf(t, exp, traceID, 1, 300*time.Millisecond); len(spans) != 0 {
			t.Fatalf("a refused request made spans: %v", spanNames(spans))
		}
	})

	t.Run("a malformed traceparent starts a fresh trace instead of failing the request", func(t *testing.T) {
		code, runID := tracedPost(t, a, "async", tracedToken, "00-"+strings.Repeat("zz", 4000)+"-01")
		if code != http.StatusOK {
			t.Fatalf("answer %d", code)
		}
		run := finishedRun(t, admin, runID)
		id, err := trace.TraceIDFromHex(fmtString(run["trace_id"]))
		if err != nil {
			t.Fatalf("run record's trace_id %v: %v", run["trace_id"], err)
		}
		for _, s := range spansOf(t, exp, id, 4, 5*time.Second) {
			if s.SpanKind == trace.SpanKindServer && s.Parent.IsValid() {
				t.Errorf("the server span has a parent: %v", s.Parent)
			}
		}
	})

	t.Run("no span carries a body, a query, a credential or a header value", func(t *testing.T) {
		spans := exp.GetSpans()
		if len(spans) < 8 {
			t.Fatalf("only %d spans", len(spans))
		}
		for _, s := range spans {
			texts := []string{s.Name, s.Status.Description}
			for _, kv := range s.Attributes {
				texts = append(texts, string(kv.Key)+"="+kv.Value.Emit())
			}
			for _, ev := range s.Events {
				texts = append(texts, ev.Name)
				for _, kv := range ev.Attributes {
					texts = append(texts, kv.Value.Emit())
				}
			}
			for _, text := range texts {
				for _, secret := range []string{tracedToken, tracedBodyMark, tracedQuery, downQuery, downHeader} {
					if strings.Contains(text, secret) {
						t.Errorf("span %q carries %q in %q", s.Name, secret, text)
					}
				}
			}
		}
	})
}

func fmtString(v any) string { s, _ := v.(string); return s }

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}
