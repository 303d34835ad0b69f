package postgres

import (
	"context"
	"strconv"
	"strings"

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
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1))
	}
	for _, c := range []struct{ col, v string }{{"partner", q.Filter.Partner}, {"site", q.Filter.Site},
		{"endpoint", q.Filter.Endpoint}, {"status", string(q.Filter.Status)}} {
		if c.v != "" {
			add(c.col+" = ?", []byte(c.v))
		}
	}
	if q.Lo != nil {
		add("id >= ?", q.Lo[:])
	}
	if q.Hi != nil {
		add("id < ?", q.Hi[:])
	}
	inner := "SELECT 1 FROM runs"
	if len(where) > 0 {
		inner += " WHERE " + strings.Join(where, " AND ")
	}
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
