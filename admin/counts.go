package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushbackd/pushbackd/store"
)

// runCounter is the store capability GET /admin/v1/runs/counts needs (store.Counter); a
// backend without it answers 501.
type runCounter interface {
	CountRuns(ctx context.Context, f store.Filter, max int) (n int, capped bool, err error)
}

// countQueryKeys are the query parameters GET /admin/v1/runs/counts reads: the filters an
// index answers, and max. Anything else is refused, as on /runs.
var countQueryKeys = []string{"partner", "site", "endpoint", "status", "since", "until", "max"}

// defaultCountMax is how far each status is counted unless max says otherwise.
const defaultCountMax = 10_000

// runCounts answers runs per status for a filter: {"counts": {"failed": 3, ...}, "capped":
// ["succeeded"], "max": 10000}. Each status is counted up to max; one listed in capped has
// more. With status= only that status is counted.
func (a *API) runCounts(c echo.Context) error {
	counter, ok := a.o.Store.(runCounter)
	if !ok {
		return &apiError{code: http.StatusNotImplemented, message: "this store cannot count runs; list them with GET /admin/v1/runs"}
	}
	q := c.QueryParams()
	var problems []string
	for k := range q {
		if !slices.Contains(countQueryKeys, k) {
			problems = append(problems, fmt.Sprintf("unknown query parameter %q (runs are counted by %s)", truncate(k), strings.Join(countQueryKeys, ", ")))
		}
	}
	max := defaultCountMax
	if s := q.Get("max"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxCount {
			problems = append(problems, fmt.Sprintf("max must be 1..%d, not %q", store.MaxCount, truncate(s)))
		}
		max = n
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return &apiError{code: http.StatusBadRequest, message: strings.Join(problems, "; ")}
	}
	rest := url.Values{}
	for k, v := range q {
		if k != "max" {
			rest[k] = v
		}
	}
	f, err := parseRunFilter(rest, a.o.Clock.Now())
	if err != nil {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	statuses := store.Statuses()
	if f.Status != "" {
		statuses = []store.Status{f.Status}
	}
	counts := map[store.Status]int{}
	capped := []store.Status{}
	for _, st := range statuses {
		f.Status = st
		n, more, err := counter.CountRuns(c.Request().Context(), f, max)
		if errors.Is(err, store.ErrInvalid) {
			return &apiError{code: http.StatusBadRequest, message: err.Error()}
		}
		if err != nil {
			return err
		}
		counts[st] = n
		if more {
			capped = append(capped, st)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"counts": counts, "capped": capped, "max": max})
}
