// Package tracing builds pushbackd's OpenTelemetry tracer provider from the standard OTEL_*
// environment variables, and holds the few helpers the gateway, the dispatcher and the saga
// engine share to carry a W3C traceparent. Nothing here is global: the provider is passed
// to whoever traces (otel.SetTracerProvider is never called).
package tracing

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
const ServiceName = "pushbackd"

// Propagator is W3C Trace Context only: baggage from a sender is not carried downstream,
// since it is arbitrary data of the sender's choosing.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// FromEnv returns the tracer provider the environment asks for, or nil (tracing off, no
// cost) when it asks for none. Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when it
// is unset and an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is; OTEL_SDK_DISABLED=true turns it off. The exporter
// is OTLP over HTTP/protobuf and reads the rest of its settings (endpoint, headers,
// timeout, TLS, compression) from the standard variables itself; the sampler
// (OTEL_TRACES_SAMPLER) and batching (OTEL_BSP_*) likewise. shutdown flushes the spans
// still buffered.
func FromEnv(ctx context.Context) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, noop, nil
	}
	exporter := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	if exporter == "" && (os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		exporter = "otlp"
	}
	switch exporter {
	case "", "none":
		return nil, noop, nil
	case "otlp":
	default:
		return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: pushbackd exports traces with otlp only (or none)", exporter)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := os.Getenv(v); p != "" && p != "http/protobuf" {
			return nil, nil, fmt.Errorf("%s=%q: pushbackd speaks OTLP over http/protobuf only; unset it or set http/protobuf", v, p)
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	p := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return p, p.Shutdown, nil
}

// carrier is a one-header TextMapCarrier for traceparent strings.
type carrier struct{ traceparent string }

func (c *carrier) Get(key string) string {
	if key == "traceparent" {
		return c.traceparent
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	if key == "traceparent" {
		c.traceparent = value
	}
}

func (c *carrier) Keys() []string { return []string{"traceparent"} }

// TraceParent is the W3C traceparent of ctx's span, "" when it has none.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	var c carrier
	Propagator().Inject(ctx, &c)
	return c.traceparent
}

// WithTraceParent returns ctx continuing the remote span traceparent names; ctx unchanged
// when traceparent is "" or malformed.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator().Extract(ctx, &carrier{traceparent: traceparent})
}

// TraceID is ctx's trace id in hex, "" when ctx has no span.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// TraceIDOf is the trace id of a W3C traceparent ("00-<trace id>-<span id>-<flags>"), ""
// when it is not one.
func TraceIDOf(traceparent string) string {
	sc := trace.SpanContextFromContext(WithTraceParent(context.Background(), traceparent))
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
