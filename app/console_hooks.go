package app

import (
	"context"
	"errors"

	"github.com/pushbackd/pushbackd/store"
)

var errNoCount = errors.New("the store cannot count runs")

// CountRuns passes store.Counter through to the backend once it is open, so the admin
// API's counts work on every backend that has it.
func (s *lazyStore) CountRuns(ctx context.Context, f store.Filter, max int) (int, bool, error) {
	st, err := s.get()
	if err != nil {
		return 0, false, err
	}
	c, ok := st.(store.Counter)
	if !ok {
		return 0, false, errNoCount
	}
	return c.CountRuns(ctx, f, max)
}

// PushbackAddr is where the pushback listener is bound, for the console's curl commands
// (admin's pushbackListener).
func (a *App) PushbackAddr() string { return a.Addr() }
