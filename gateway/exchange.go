package gateway

import (
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"
)

// exchange is echo's context for one request with what observe needs once the answer is
// out: the request id and the metric labels, and the server span. They were values in
// echo's c.Set store, which costs a map and a boxed string per value on every request,
// the 401 that anyone can make us answer included; here they are one allocation.
type exchange struct {
	echo.Context
	requestID string
	// partner and endpoint label the request once its route resolved; requests to unknown
	// endpoints keep them empty, so a scanner cannot grow the label set.
	partner, endpoint string
	reason            string     // "" or a Reason constant
	span              trace.Span // nil: no server span
}

// exchangeOf is the exchange observe wrapped c in. A handler called without observe (none
// is) gets a throwaway one, so its labels go nowhere rather than panic.
func exchangeOf(c echo.Context) *exchange {
	if x, ok := c.(*exchange); ok {
		return x
	}
	return &exchange{Context: c}
}
