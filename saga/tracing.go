package saga

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushbackd/pushbackd/tracing"
)

// The engine traces only inside a run that is traced: its tracer comes from the span in
// ctx (the dispatcher's run attempt), so the engine holds no provider of its own and an
// untraced run pays one context lookup per step.
const tracerName = "github.com/pushbackd/pushbackd/saga"

// action runs a step, a compensation or on_failure (actionUntraced) inside a span of its
// own when the run is traced.
func (r *run) action(ctx context.Context, name string, a *Action, retry Retry, timeout time.Duration, p part, done int) (StepRecord, *Answer, error) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return r.actionUntraced(ctx, name, a, retry, timeout, p, done)
	}
	kind := [...]string{partStep: "step", partCompensation: "compensation", partOnFailure: "on_failure"}[p]
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, kind+" "+name, trace.WithAttributes(
		attribute.String("pushbackd.step", name),
		attribute.String("pushbackd.action", a.Kind),
		attribute.String("pushbackd.part", kind),
	))
	defer span.End()
	rec, ans, err := r.actionUntraced(ctx, name, a, retry, timeout, p, done)
	span.SetAttributes(attribute.String("pushbackd.status", rec.Status), attribute.Int("pushbackd.attempts", rec.Attempts))
	if err != nil {
		// rec.Error is already redacted of the run's secrets; the raw err may not be.
		span.SetStatus(codes.Error, rec.Error)
	}
	return rec, ans, err
}

// clientSpan is an http action's call as an OpenTelemetry client span; nil when the run is
// not traced. Its attributes are the method, the URL without query, user info or fragment
// (they carry credentials that no secret() produced) and the answer's status: never the
// headers or bodies either way.
type clientSpan struct{ span trace.Span }

func startClientSpan(ctx context.Context, method string, u *url.URL) (context.Context, *clientSpan) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("url.full", safeURL(u)),
		attribute.String("server.address", u.Hostname()),
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			attrs = append(attrs, attribute.Int("server.port", n))
		}
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, &clientSpan{span: span}
}

// inject sends the call's traceparent downstream, replacing any the saga set: the
// downstream's spans belong under this call.
func (s *clientSpan) inject(ctx context.Context, h http.Header) {
	if s != nil {
		tracing.Propagator().Inject(ctx, propagation.HeaderCarrier(h))
	}
}

func (s *clientSpan) answered(status int) {
	if s == nil {
		return
	}
	s.span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 400 {
		s.span.SetStatus(codes.Error, http.StatusText(status))
	}
}

// failed records a call that got no answer. The message names no URL: err comes from the
// transport, unwrapped of url.Error.
func (s *clientSpan) failed(err error) {
	if s != nil {
		s.span.SetStatus(codes.Error, err.Error())
	}
}

func (s *clientSpan) end() {
	if s != nil {
		s.span.End()
	}
}
