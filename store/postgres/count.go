package postgres

import (
	"context"
	"strconv"

	"github.com/pushbackd/pushbackd/store"
)

// CountRuns implements store.Counter: a count over at most max+1 matching rows, so a count
// of a large window stops early, and no record is decoded.
func (s *Store) CountRuns(ctx context.Context, f store.Filter, max int) (int, bool, error) {
	q, err := store.NewCountQuery(f, max)
	if err != nil {
		return 0, false, err
	}
	if err := s.begin(ctx); err != nil {
		return 0, false, err
	}
	inner, args := whereFor(q, "SELECT 1 FROM runs")
	args = append(args, max+1)
	inner += " LIMIT $" + strconv.Itoa(len(args))
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM ("+inner+") AS matched", args...).Scan(&n); err != nil {
		return 0, false, wrap("count runs", err)
	}
	if n > max {
		return max, true, nil
	}
	return n, false, nil
}
