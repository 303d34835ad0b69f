package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pushbackd/pushbackd/store"
)

// saveReq is one worker's Save waiting for the save batcher's commit.
type saveReq struct {
	run   *store.Run // the caller's, read only until done
	id    store.RunID
	lease store.Lease
	now   time.Time
	out   store.Run // as stored, once committed
	err   error
	done  chan struct{}
}

// Save stores a worker's outcome under its lease. Every async run ends in one, so Saves
// are group-committed like creates: the save batcher commits up to MaxBatch concurrent
// saves in one transaction, each fenced by its own lease inside it (a lost lease fails
// that save alone), and Save returns once that transaction committed.
func (s *Store) Save(ctx context.Context, run *store.Run, lease store.Lease) error {
	id, err := store.CheckSave(run, lease)
	if err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	now := s.clock.Now()
	if s.maxBatch == 1 {
		out, err := s.saveAlone(ctx, run, id, lease, now)
		if err != nil {
			return err
		}
		store.ReportSaved(run, &out)
		return nil
	}
	q := &saveReq{run: run, id: id, lease: lease, now: now, done: make(chan struct{})}
	s.sendMu.RLock()
	if s.closed.Load() {
		s.sendMu.RUnlock()
		return store.ErrClosed
	}
	s.saves <- q
	s.sendMu.RUnlock()
	// As Create: wait for the outcome even if ctx ends, so the worker learns what was stored.
	<-q.done
	if q.err != nil {
		return q.err
	}
	store.ReportSaved(run, &q.out)
	return nil
}

// saveAlone is one save in a transaction of its own: with MaxBatch 1, and for each save of
// a batch the database refused as a whole. It returns the run as stored.
func (s *Store) saveAlone(ctx context.Context, run *store.Run, id store.RunID, lease store.Lease, now time.Time) (store.Run, error) {
	var out store.Run
	err := s.tx(ctx, "save run", func(tx pgx.Tx) error {
		stored, st, err := lockRun(ctx, tx, id, run.Status.Final())
		if err != nil {
			return err
		}
		if !st.held(stored, lease) {
			return store.LeaseLost(lease)
		}
		in := *run
		if err := store.ApplyUpdate(stored, &in, now); err != nil {
			return err
		}
		out = *stored
		return s.write(ctx, tx, stored, now)
	})
	return out, err
}

// saveBatcher commits saves in groups: while one transaction commits, the next gathers.
func (s *Store) saveBatcher() {
	defer s.batcherWG.Done()
	batches(s.saves, s.stop, s.maxBatch, s.commitSaves)
}

// errSaveBatch is a batch of saves the database refused as a whole (not a deadlock): each
// save is committed again alone, so the one at fault fails alone.
var errSaveBatch = errors.New("batch of saves failed")

// commitSaves commits batch in one transaction and answers each save. Two saves of one
// run are never in one transaction (the second must see the first's write): a run's
// second save goes to the next transaction.
func (s *Store) commitSaves(batch []*saveReq) {
	seen := make(map[store.RunID]bool, len(batch))
	var now, later []*saveReq
	for _, q := range batch {
		if seen[q.id] {
			later = append(later, q)
			continue
		}
		seen[q.id] = true
		now = append(now, q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 5 {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return s.savesIn(ctx, tx, now) })
		if !retryable(err) {
			break
		}
	}
	for _, q := range now {
		switch {
		case errors.Is(err, errSaveBatch):
			q.out, q.err = s.saveAlone(ctx, q.run, q.id, q.lease, q.now)
		case err != nil:
			q.err = wrap("save run", err)
		case q.err != nil:
			q.err = wrap("save run", q.err)
		}
		close(q.done)
	}
	if len(later) > 0 {
		s.commitSaves(later)
	}
}

// savesIn writes batch's saves in tx with a fixed number of round trips whatever its size:
// the serialize_by keys of the saves that end their runs (read unlocked: a run's key never
// changes) and their advisory locks; the rows, locked in id order so two batches cannot
// deadlock on each other; each save checked against its lease and merged in memory; the
// writes of the saves that hold their lease, pipelined. A save that fails its check is
// left out of the writes and answered with its error; the others commit.
func (s *Store) savesIn(ctx context.Context, tx pgx.Tx, batch []*saveReq) error {
	var ids, finals [][]byte
	for _, q := range batch {
		q.err, q.out = nil, store.Run{}
		ids = append(ids, q.id[:])
		if q.run.Status.Final() {
			finals = append(finals, q.id[:])
		}
	}
	if len(finals) > 0 {
		rows, err := tx.Query(ctx, "SELECT serialize_key FROM runs WHERE id = ANY($1) AND serialize_key <> ''::bytea", finals)
		if err != nil {
			return err
		}
		var keys []string
		for rows.Next() {
			var k []byte
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, string(k))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := lockKeys(ctx, tx, keys...); err != nil {
			return err
		}
	}
	rows, err := tx.Query(ctx, `SELECT id, rec, lease_owner, lease_token, lease_expires FROM runs
		WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return err
	}
	type row struct {
		r  *store.Run
		st stored
	}
	got := make(map[store.RunID]row, len(batch))
	for rows.Next() {
		var id, rec, owner []byte
		var st stored
		if err := rows.Scan(&id, &rec, &owner, &st.token, &st.expires); err != nil {
			rows.Close()
			return err
		}
		st.owner = string(owner)
		r, err := decode(id, rec, true)
		if err != nil {
			rows.Close()
			return err
		}
		got[store.RunID(id)] = row{r, st}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	wake := false
	for _, q := range batch {
		g, ok := got[q.id]
		switch {
		case !ok:
			q.err = fmt.Errorf("run %s: %w", q.id, store.ErrNotFound)
			continue
		case !g.st.held(g.r, q.lease):
			q.err = store.LeaseLost(q.lease)
			continue
		}
		in := *q.run
		if err := store.ApplyUpdate(g.r, &in, q.now); err != nil {
			q.err = err
			continue
		}
		q.out = *g.r
		w, err := queueWrite(b, g.r, q.now)
		if err != nil {
			q.err = err
			continue
		}
		wake = wake || w
	}
	if wake {
		b.Queue("SELECT pg_notify($1, '')", notifyChannel)
	}
	if b.Len() == 0 {
		return nil
	}
	err = tx.SendBatch(ctx, b).Close()
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !retryable(err) && !unavailable(pe) {
		return fmt.Errorf("%w: %w", errSaveBatch, err)
	}
	return err
}
