package store

import (
	"context"
	"fmt"
)

// MaxCount bounds one count: a backend stops after max+1 matching runs and says the count
// is capped, so counting a window of a large history costs at most that many index reads.
const MaxCount = 100_000

// Counter counts runs from a backend's indexes without reading the runs. It is optional:
// callers that want counts (the admin API's /runs/counts) declare it and check for it.
type Counter interface {
	// CountRuns counts the runs f matches, at most max of them: capped reports that more
	// match. Only the filters an index answers are allowed (partner, site, endpoint, status,
	// since, until); any other is ErrInvalid, as is max outside 1..MaxCount.
	CountRuns(ctx context.Context, f Filter, max int) (n int, capped bool, err error)
}

// NewCountQuery checks a count's filter and bound and turns them into id bounds, as
// NewListQuery does for a page.
func NewCountQuery(f Filter, max int) (ListQuery, error) {
	if max < 1 || max > MaxCount {
		return ListQuery{}, fmt.Errorf("%w: count bound %d is not in 1..%d", ErrInvalid, max, MaxCount)
	}
	if f.Saga != "" || f.IdempotencyKey != "" || f.ReplayOf != "" || f.RetryOf != "" || f.Cursor != "" {
		return ListQuery{}, fmt.Errorf("%w: runs are counted by partner, site, endpoint, status, since and until only", ErrInvalid)
	}
	f.Limit, f.Oldest = 0, true
	q, err := NewListQuery(f)
	q.Limit = max
	return q, err
}
