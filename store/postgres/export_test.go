package postgres

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushbackd/pushbackd/store"
)

// statementCounter counts the statements a pool sends: each is a round trip.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// CreateBatch commits runs as one batch of the create batcher, on a store of its own
// whose batcher does not run, and reports each create's result and error and the
// statements the batch sent. dsn's database must be migrated.
func CreateBatch(ctx context.Context, dsn string, runs []*store.Run, opts []store.CreateOptions) ([]store.CreateResult, []error, int, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, 0, err
	}
	counter := &statementCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, 0, err
	}
	defer pool.Close()
	s := &Store{pool: pool, clock: store.SystemClock{}, log: slog.New(slog.DiscardHandler), maxBatch: len(runs)}
	now := s.clock.Now()
	batch := make([]*createReq, len(runs))
	for i, run := range runs {
		r, id, err := store.PrepareCreate(run, now, &s.ids)
		if err != nil {
			return nil, nil, 0, err
		}
		batch[i] = &createReq{run: r, id: id, opts: opts[i], now: now, done: make(chan struct{})}
	}
	if err := pool.Ping(ctx); err != nil { // connect before counting
		return nil, nil, 0, err
	}
	counter.n.Store(0)
	s.commitBatch(batch)
	res, errs := make([]store.CreateResult, len(batch)), make([]error, len(batch))
	for i, q := range batch {
		res[i], errs[i] = q.res, q.err
		if q.err == nil && q.res.DuplicateOf == "" {
			*runs[i] = q.out
		}
	}
	return res, errs, int(counter.n.Load()), nil
}

// MaxConns is the size of s's pool.
func MaxConns(s *Store) int32 { return s.pool.Config().MaxConns }
