package memory

import (
	"bytes"
	"context"
	"sort"

	"github.com/pushbackd/pushbackd/store"
)

// CountRuns implements store.Counter. The memory store keeps no indexes: it decodes each
// run in the window, which is fine for the tests it serves.
func (m *Store) CountRuns(ctx context.Context, f store.Filter, max int) (int, bool, error) {
	q, err := store.NewCountQuery(f, max)
	if err != nil {
		return 0, false, err
	}
	if err := m.begin(ctx); err != nil {
		return 0, false, err
	}
	defer m.mu.Unlock()
	i := 0
	if q.Lo != nil {
		i = sort.Search(len(m.order), func(j int) bool { return bytes.Compare(m.order[j][:], q.Lo[:]) >= 0 })
	}
	n := 0
	for ; i < len(m.order) && q.InRange(m.order[i]); i++ {
		if !q.Matches(m.load(m.order[i], false)) {
			continue
		}
		if n == max {
			return n, true, nil
		}
		n++
	}
	return n, false, nil
}
