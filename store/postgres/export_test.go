package postgres

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pushbackd/pushbackd/store"
)

// statementCounter counts the round trips a pool makes: each statement sent alone, and
// each pipelined batch of statements.
type statementCounter struct{ n, commits atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	if strings.EqualFold(d.SQL, "commit") {
		c.commits.Add(1)
	}
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// CreateBatch commits runs as one batch of the create batcher, on a store of its own
// whose batcher does not run, and reports each create's result and error and the round
// trips the batch made (statements, and pipelined batches of them). dsn's database must
// be migrated.
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

// SaveBatch commits saves of runs under leases as one batch of the save batcher (alone:
// each in a transaction of its own, as with MaxBatch 1), on a store of its own whose
// batchers do not run, and reports each save's error and the round trips and commits the
// batch made. On success each run reports what was stored, as Save does.
func SaveBatch(ctx context.Context, dsn string, runs []*store.Run, leases []store.Lease, alone bool) ([]error, int, int, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, 0, 0, err
	}
	counter := &statementCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, 0, 0, err
	}
	defer pool.Close()
	s := &Store{pool: pool, clock: store.SystemClock{}, log: slog.New(slog.DiscardHandler), maxBatch: len(runs)}
	now := s.clock.Now()
	batch := make([]*saveReq, len(runs))
	for i, run := range runs {
		id, err := store.CheckSave(run, leases[i])
		if err != nil {
			return nil, 0, 0, err
		}
		batch[i] = &saveReq{run: run, id: id, lease: leases[i], now: now, done: make(chan struct{})}
	}
	if err := pool.Ping(ctx); err != nil { // connect before counting
		return nil, 0, 0, err
	}
	counter.n.Store(0)
	if alone {
		for _, q := range batch {
			q.out, q.err = s.saveAlone(ctx, q.run, q.id, q.lease, q.now)
		}
	} else {
		s.commitSaves(batch)
	}
	errs := make([]error, len(batch))
	for i, q := range batch {
		errs[i] = q.err
		if q.err == nil {
			store.ReportSaved(runs[i], &q.out)
		}
	}
	return errs, int(counter.n.Load()), int(counter.commits.Load()), nil
}
