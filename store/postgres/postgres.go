// Package postgres is a store.Store on PostgreSQL, so several pushbackd processes share run
// history, idempotency and the work queue.
//
// Schema (migrations/, applied with goose under a Postgres advisory lock at Open):
//
//   - runs: one row per run. rec holds the whole run as the store codec (store.EncodeRun),
//     so fields added to store.Run travel without a schema change; beside it sit the
//     columns queries filter and index on (partner, site, endpoint, status, saga, idem_key,
//     replay_of, serialize_key, debounce_key), and the queue's: final, parked, due_at
//     (unix ns, NULL when final) and the lease (owner, token, expires). List is served by
//     an index per filter, ordered by id (a UUIDv7, so by arrival).
//   - run_keys: idempotency and message keys, each naming the run it admitted until expires.
//   - kv, kv_counts: saga kv state per partner, and each namespace's entry count, kept as
//     entries come and go so MaxEntries never counts by a scan.
//   - saga_versions: applied saga sources per name.
//   - runnable_deltas: the number of queued or waiting runs (what MaxRunnable bounds) as
//     rows of changes summing to it, appended by triggers on runs and folded by creates.
//
// Times are the store.Clock's (unix nanoseconds), never the server's now().
//
// Claim:
//
//	SELECT id, rec, lease_token FROM runs
//	WHERE due_at IS NOT NULL AND NOT parked AND due_at <= $now
//	ORDER BY due_at, id LIMIT $max FOR UPDATE SKIP LOCKED
//
// over the partial index runs_due, so claimers in several processes take different runs
// and never wait on each other. A run is parked when it is created behind an earlier
// unfinished run of its serialize_by key; the transaction that makes that run final
// unparks the next one. Every transaction that parks, unparks or supersedes takes a
// transaction-scoped advisory lock per serialize_by and debounce key first, so those rules
// hold across processes. Writes by workers are fenced by lease_token; concurrent creates,
// and apart from them concurrent worker saves, are group-committed (one transaction, so
// one WAL flush, per batch), each still succeeding or failing alone.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/pushbackd/pushbackd/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune Open. Zero values are defaults.
type Options struct {
	Clock  store.Clock  // nil: the system clock
	Logger *slog.Logger // nil: discard
	// MaxConns bounds the pool; 0 is 10. A pool_max_conns in the DSN wins over it.
	MaxConns int32
	// MaxBatch is how many concurrent creates, and apart from them how many concurrent
	// worker saves, one transaction commits together; 0 is 64, 1 commits each alone.
	MaxBatch int
}

// Store is a store.Store on Postgres.
type Store struct {
	pool   *pgxpool.Pool
	clock  store.Clock
	log    *slog.Logger
	ids    store.IDGen
	closed atomic.Bool

	leadMu    sync.Mutex
	leads     map[*byte]func() // held leader locks: Close gives them up
	sendMu    sync.RWMutex     // held to send on creates; Close takes it to stop senders
	creates   chan *createReq
	saves     chan *saveReq
	stop      chan struct{}
	batcherWG sync.WaitGroup
	maxBatch  int
}

var _ store.Store = (*Store)(nil)

// notifyChannel is the LISTEN/NOTIFY channel a run falling due is announced on.
const notifyChannel = "pushbackd_due"

// SchemaVersion is the schema version this binary migrates a database to.
func SchemaVersion() int64 {
	var v int64
	entries, _ := fs.ReadDir(migrations, "migrations")
	for _, e := range entries {
		n, _, _ := strings.Cut(e.Name(), "_")
		if x, err := strconv.ParseInt(n, 10, 64); err == nil && x > v {
			v = x
		}
	}
	return v
}

// Open connects to dsn (a postgres:// URL or key=value string), migrates the schema under
// an advisory lock (instances starting together wait for each other) and starts the
// create and save batchers. A server it cannot reach is store.ErrUnavailable.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres dsn: %w", err) // pgx leaves the password out
	}
	// A pool_max_conns in the DSN is the operator's choice and wins; otherwise opts, else 10.
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = 10
		if opts.MaxConns > 0 {
			cfg.MaxConns = opts.MaxConns
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrap("connect to postgres", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, clock: opts.Clock, log: opts.Logger, maxBatch: opts.MaxBatch,
		creates: make(chan *createReq, 256), saves: make(chan *saveReq, 256), stop: make(chan struct{})}
	if s.clock == nil {
		s.clock = store.SystemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 64
	}
	s.batcherWG.Add(2)
	go s.batcher()
	go s.saveBatcher()
	return s, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("postgres migrations: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("postgres migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true),
		goose.WithTableName("pushbackd_schema_version"))
	if err != nil {
		return fmt.Errorf("postgres migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return wrap("apply postgres migrations", err)
	}
	return nil
}

// Close stops the batchers (pending creates and saves are answered first) and closes the pool.
func (s *Store) Close() error {
	s.sendMu.Lock()
	if s.closed.Swap(true) {
		s.sendMu.Unlock()
		return nil
	}
	s.sendMu.Unlock()
	s.leadMu.Lock()
	leads := s.leads
	s.leads = nil
	s.leadMu.Unlock()
	for _, release := range leads {
		release()
	}
	close(s.stop)
	s.batcherWG.Wait()
	s.pool.Close()
	return nil
}

func (s *Store) begin(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// wrap maps errors that mean "the database is not there" (connection refused or lost,
// the server shutting down or out of connections) to store.ErrUnavailable, so the gateway
// answers 503 and senders retry; other errors keep their meaning.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, store.ErrFinal) || errors.Is(err, store.ErrLeaseLost) ||
		errors.Is(err, store.ErrFull) || errors.Is(err, store.ErrKVFull) || errors.Is(err, store.ErrClosed) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if unavailable(pe) {
			return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	// Not a server's answer: the connection failed or broke.
	return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
}

// unavailable reports a server's answer that means it cannot serve now (connection
// trouble, resources, shutting down, read-only).
func unavailable(pe *pgconn.PgError) bool {
	return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") ||
		pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "25006"
}

// retryable reports a deadlock or serialization failure: the transaction is run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// tx runs fn in a transaction, again on a deadlock.
func (s *Store) tx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	var err error
	for range 5 {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if !retryable(err) {
			break
		}
	}
	return wrap(op, err)
}

// lockKeys takes a transaction-scoped advisory lock per key, in sorted order so two
// transactions locking several keys cannot deadlock on each other.
func lockKeys(ctx context.Context, tx pgx.Tx, keys ...string) error {
	_, err := lockAndCount(ctx, tx, keys, false)
	return err
}

// lockSQL takes the advisory locks of a sorted array in one statement: unnest yields them
// in the array's order, and the aggregate takes each in turn.
const lockSQL = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) AS k"

// runnableSQL reads the number of queued or waiting runs (migration 00002), and how many
// rows of changes it summed.
const runnableSQL = "SELECT coalesce(sum(n), 0), count(*) FROM runnable_deltas"

// compactAt is how many rows of changes to the runnable count a create batch lets gather
// before it folds them into one: reading the count costs a row each.
const compactAt = 1000

// lockAndCount takes keys' advisory locks (as lockKeys) and then, when count, reads the
// number of queued or waiting runs, pipelined in one round trip. count needs runnableLock
// among keys: it folds the count's rows when they have gathered.
func lockAndCount(ctx context.Context, tx pgx.Tx, keys []string, count bool) (int, error) {
	var hs []int64
	for _, k := range keys {
		if k != "" {
			hs = append(hs, keyLock(k))
		}
	}
	slices.Sort(hs)
	hs = slices.Compact(hs)
	b := &pgx.Batch{}
	if len(hs) > 0 {
		b.Queue(lockSQL, hs)
	}
	if count {
		b.Queue(runnableSQL)
	}
	if b.Len() == 0 {
		return 0, nil
	}
	br := tx.SendBatch(ctx, b)
	var err error
	if len(hs) > 0 {
		_, err = br.Exec()
	}
	var n, rows int
	if err == nil && count {
		err = br.QueryRow().Scan(&n, &rows)
	}
	if err = cmpErr(err, br.Close()); err != nil || rows < compactAt {
		return n, err
	}
	// Rows that concurrent transactions add meanwhile are not seen, so not deleted; the
	// lock keeps a second folder out.
	_, err = tx.Exec(ctx, `WITH d AS (DELETE FROM runnable_deltas RETURNING n)
		INSERT INTO runnable_deltas (n) SELECT coalesce(sum(n), 0) FROM d`)
	return n, err
}

func keyLock(k string) int64 {
	h := fnv.New64a()
	h.Write([]byte(k))
	return int64(h.Sum64())
}

// runnableLock serializes creates that check MaxRunnable.
const runnableLock = "\x00runnable"

func nanos(t time.Time) int64 { return store.TimeNanos(t) }
