package gateway

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pushbackd/pushbackd/tracing"
)

// startServerSpan starts the request's server span, continuing the sender's traceparent,
// and returns its trace id for the log. (It takes no *reqLog: passing one here would make
// every request's log fields escape to the heap, tracing on or off.)
//
// It runs only after the request authenticated: an unauthenticated sender gets no span and
// no trace of its choosing, so it cannot make us export anything (refusals are in the
// metrics and the log). The span still starts at arrival, so its duration covers reading
// and verifying the body. Its attributes are the route and the answer: never the body,
// the query or any header, which carry credentials.
func (g *Gateway) startServerSpan(c echo.Context, arrived time.Time, partner, site, endpoint string) (traceID string) {
	r := c.Request()
	ctx := tracing.Propagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	route := "/pushback/{partner}/{endpoint}"
	if site != "" {
		route = "/pushback/{partner}/{site}/{endpoint}"
	}
	ctx, span := g.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(arrived),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String("url.path", r.URL.Path),
			attribute.String("pushbackd.partner", partner),
			attribute.String("pushbackd.site", site),
			attribute.String("pushbackd.endpoint", endpoint),
			attribute.String("pushbackd.request_id", requestID(c)),
		))
	c.SetRequest(r.WithContext(ctx))
	exchangeOf(c).span = span
	return span.SpanContext().TraceID().String()
}

// endServerSpan records the answer's status; 5xx marks the span an error (4xx are the
// sender's errors, not ours, as OpenTelemetry's HTTP conventions say for servers).
func endServerSpan(span trace.Span, status int) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
