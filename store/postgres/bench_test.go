package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/postgres"
)

// BenchmarkCreate compares group-committed creates with one commit per create, from many
// concurrent callers (as concurrent accepts are), on a durable cluster (fsync and
// synchronous_commit on: the commit's flush is what batching shares).
func BenchmarkCreate(b *testing.B) {
	c, err := pgtest.Start("fsync=on", "synchronous_commit=on")
	if err != nil {
		env.Need(b) // skips, or fails under PUSHBACKD_REQUIRE_TOOLS
		b.Fatal(err)
	}
	defer c.Stop()
	for _, bc := range []struct {
		name  string
		batch int
	}{{"batched", 0}, {"unbatched", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			dsn := c.NewDatabase(b, "")
			s, err := postgres.Open(context.Background(), dsn, postgres.Options{MaxBatch: bc.batch, MaxConns: 16})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := &store.Run{Partner: "acme", Endpoint: "e", Mode: "async",
						IdempotencyKey: fmt.Sprintf("acme//e/%d", n.Add(1)), Request: store.Request{Body: []byte(`{"loan":"1"}`)}}
					if _, err := s.Create(context.Background(), r, store.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
