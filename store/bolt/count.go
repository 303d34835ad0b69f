package bolt

import (
	"context"
	"fmt"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// CountRuns implements store.Counter by walking the index List would read (runs by id,
// by status, by scope, or by status and scope) within the window's id range: keys only,
// no run is decoded, and at most max+1 keys are read.
func (b *Store) CountRuns(ctx context.Context, f store.Filter, max int) (int, bool, error) {
	q, err := store.NewCountQuery(f, max)
	if err != nil {
		return 0, false, err
	}
	n, capped := 0, false
	err = b.view(ctx, func(tx *bbolt.Tx) error {
		m := listPlan(tx, &q)
		for {
			if _, ok := m.next(); !ok {
				return nil
			}
			if n == max {
				capped = true
				return nil
			}
			n++
		}
	})
	if err != nil {
		return 0, false, fmt.Errorf("count runs: %w", err)
	}
	return n, capped, nil
}
