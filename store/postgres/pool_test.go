package postgres_test

import (
	"context"
	"testing"

	"github.com/pushbackd/pushbackd/store/postgres"
)

// The pool is 10 connections unless the caller says otherwise, and a pool_max_conns in the
// DSN, the operator's own setting, wins over both.
func TestPoolSizeFollowsTheDSN(t *testing.T) {
	dsn := newDB(t)
	for _, tc := range []struct {
		name string
		dsn  string
		opts postgres.Options
		want int32
	}{
		{"the default is 10", dsn, postgres.Options{}, 10},
		{"options set it", dsn, postgres.Options{MaxConns: 4}, 4},
		{"pool_max_conns in the DSN wins", dsn + " pool_max_conns=3", postgres.Options{MaxConns: 4}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := postgres.Open(context.Background(), tc.dsn, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := postgres.MaxConns(s); got != tc.want {
				t.Fatalf("pool of %d connections, want %d", got, tc.want)
			}
		})
	}
}
