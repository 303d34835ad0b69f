package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
)

type instantRuns struct{}

func (instantRuns) Accept(context.Context, *store.Run, *saga.Invocation, store.CreateOptions) (string, error) {
	return "", nil
}

func (instantRuns) RunSync(context.Context, *store.Run, *saga.Invocation, store.CreateOptions) (*saga.Result, string, error) {
	return &saga.Result{Status: "succeeded"}, "", nil
}

// benchServe drives h in-process with the same request every iteration, so the figures
// compare handler cost, not the network.
func benchServe(b *testing.B, h http.Handler, path string, header http.Header, body []byte, want int) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header = header
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("got %d: %s", rec.Code, rec.Body)
		}
	}
}

func benchGateway(b testing.TB) *Gateway {
	cfg, err := config.Load("testdata/config/pushbackd.yaml")
	if err != nil {
		b.Fatal(err)
	}
	// Measure verification, not the failure budget (which would turn 401s into 429s).
	cfg.Server.Limits.AuthFailures = config.AuthFailures{Window: time.Minute}
	return New(Options{Config: staticConfig{cfg}, Runs: instantRuns{}, Logger: zap.NewNop()})
}

var benchBody = bytes.Repeat([]byte(`{"eventId":"243e4b32","eventType":"milestone","meta":{"resourceId":"10d191c3"}},`), 12)[:960]

// BenchmarkBareEcho is the yardstick: an Echo handler that reads the body and answers 200.
func BenchmarkBareEcho(b *testing.B) {
	e := echo.New()
	e.POST("/pushback/:partner/:endpoint", func(c echo.Context) error {
		if _, err := io.ReadAll(c.Request().Body); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "OK"})
	})
	benchServe(b, e, "/pushback/acme/encompass", http.Header{}, benchBody, 200)
}

func BenchmarkGatewayRejectsBadSignature(b *testing.B) {
	h := http.Header{"Elli-Signature": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}
	benchServe(b, benchGateway(b), "/pushback/acme/encompass", h, benchBody, 401)
}

func BenchmarkGatewaySignatureSync(b *testing.B) {
	sig := security.SignatureValue([]byte("encompass-signing-key-0001"), benchBody, "base64", "")
	h := http.Header{"Elli-Signature": {sig}, "Content-Type": {"text/plain"}}
	benchServe(b, benchGateway(b), "/pushback/acme/encompass", h, benchBody, 200)
}

// BenchmarkGatewaySignatureSyncTraced is BenchmarkGatewaySignatureSync with tracing on (every
// request sampled, spans kept in memory): the cost of a server span. With tracing off the
// gateway must allocate exactly what it did before tracing existed.
func BenchmarkGatewaySignatureSyncTraced(b *testing.B) {
	g := benchGateway(b)
	exp := tracetest.NewInMemoryExporter()
	g = New(Options{Config: g.opts.Config, Runs: instantRuns{}, Logger: zap.NewNop(), Tracing: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))})
	sig := security.SignatureValue([]byte("encompass-signing-key-0001"), benchBody, "base64", "")
	h := http.Header{"Elli-Signature": {sig}, "Content-Type": {"text/plain"},
		"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	b.Cleanup(func() { exp.Reset() })
	benchServe(b, g, "/pushback/acme/encompass", h, benchBody, 200)
}
