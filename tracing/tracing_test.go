package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestFromEnvDecidesWhetherToTrace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		on      bool
		wantErr string
	}{
		{"nothing set means no tracing", nil, false, ""},
		{"OTEL_TRACES_EXPORTER=none means no tracing", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, false, ""},
		{"OTEL_TRACES_EXPORTER=otlp turns tracing on", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"an OTLP endpoint alone turns tracing on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, ""},
		{"a traces endpoint alone turns tracing on", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true, ""},
		{"OTEL_SDK_DISABLED=true wins over an exporter", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false, ""},
		{"an exporter pushbackd does not ship is an error that names it", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, `OTEL_TRACES_EXPORTER="zipkin"`},
		{"the grpc protocol is an error that says what to set", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, "http/protobuf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
				t.Setenv(k, tc.env[k])
			}
			tp, shutdown, err := FromEnv(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = shutdown(context.Background()) }()
			if (tp != nil) != tc.on {
				t.Fatalf("tracer provider %v, want on=%v", tp, tc.on)
			}
		})
	}
}

// The OTLP exporter really sends: spans end up at the endpoint the environment names.
func TestFromEnvExportsOverOTLPHTTP(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			posts.Add(1)
		}
	}))
	defer collector.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	tp, shutdown, err := FromEnv(context.Background())
	if err != nil || tp == nil {
		t.Fatalf("provider %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "one")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Fatal("the collector got no OTLP trace export")
	}
}

func TestTraceParentHelpers(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := WithTraceParent(context.Background(), tp)
	for _, tc := range []struct{ name, got, want string }{
		{"a traceparent round-trips through a context", TraceParent(ctx), tp},
		{"the trace id of a context is its traceparent's", TraceID(ctx), "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"the trace id of a traceparent is read without a context", TraceIDOf(tp), "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"a malformed traceparent has no trace id", TraceIDOf("00-nothex-00f067aa0ba902b7-01"), ""},
		{"an all-zero trace id is no trace id", TraceIDOf("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), ""},
		{"a context without a span has no traceparent", TraceParent(context.Background()), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// TraceIDOf reads traceparents stored in run records: whatever the bytes, it answers "" or
// the 32 hex digits the traceparent carries.
func FuzzTraceIDOf(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, tp string) {
		id := TraceIDOf(tp)
		if id == "" {
			return
		}
		if len(id) != 32 || !strings.Contains(strings.ToLower(tp), id) {
			t.Fatalf("TraceIDOf(%q) = %q", tp, id)
		}
	})
}
