package dispatch

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/tracing"
)

// startAttempt starts the span of one attempt at run r: a child of ctx's span (a sync
// run, still inside its request) or else of the span recorded in r.TraceParent (a run a
// worker claimed, maybe after a restart). It adds trace_id to *log. end records how the
// attempt ended. With tracing off it costs nothing.
func (d *Dispatcher) startAttempt(ctx context.Context, r *store.Run, log **zap.Logger) (context.Context, func(*saga.Result)) {
	if d.tracer == nil {
		return ctx, func(*saga.Result) {}
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tracing.WithTraceParent(ctx, r.TraceParent)
	}
	ctx, span := d.tracer.Start(ctx, "run "+r.Saga, trace.WithAttributes(
		attribute.String("pushbackd.run_id", r.ID),
		attribute.String("pushbackd.saga", r.Saga),
		attribute.String("pushbackd.saga_version", r.SagaVersion),
		attribute.String("pushbackd.partner", r.Partner),
		attribute.String("pushbackd.endpoint", r.Endpoint),
		attribute.Int("pushbackd.attempt", r.Attempt),
	))
	*log = (*log).WithLazy(zap.String("trace_id", span.SpanContext().TraceID().String()))
	return ctx, func(res *saga.Result) {
		if res != nil {
			span.SetAttributes(attribute.String("pushbackd.status", res.Status))
			switch res.Status {
			case saga.StatusSucceeded, saga.StatusWaiting, saga.StatusInterrupted:
			default:
				span.SetStatus(codes.Error, "run "+res.Status+" (attempt "+strconv.Itoa(r.Attempt)+")")
			}
		}
		span.End()
	}
}
