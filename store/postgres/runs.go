package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pushbackd/pushbackd/store"
)

// createReq is one Create waiting for the batcher's commit.
type createReq struct {
	run  store.Run // prepared (store.PrepareCreate); a retried batch starts from it again
	out  store.Run // as stored, once committed
	id   store.RunID
	opts store.CreateOptions
	now  time.Time
	res  store.CreateResult
	err  error
	done chan struct{}
}

// Create hands the run to the batcher, which commits up to MaxBatch concurrent creates
// in one transaction (one savepoint each, so one create's failure leaves the others), and
// returns once that transaction committed: the caller may answer 2xx.
func (s *Store) Create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error) {
	if err := s.begin(ctx); err != nil {
		return store.CreateResult{}, err
	}
	now := s.clock.Now()
	r, id, err := store.PrepareCreate(run, now, &s.ids)
	if err != nil {
		return store.CreateResult{}, err
	}
	if opts.Owner != "" {
		if err := store.CheckClaimArgs(opts.Owner, opts.LeaseTTL); err != nil {
			return store.CreateResult{}, err
		}
	}
	req := &createReq{run: r, id: id, opts: opts, now: now, done: make(chan struct{})}
	s.sendMu.RLock()
	if s.closed.Load() {
		s.sendMu.RUnlock()
		return store.CreateResult{}, store.ErrClosed
	}
	s.creates <- req
	s.sendMu.RUnlock()
	// Wait for the outcome even if ctx ends: the caller must not be told "failed" about a
	// run that was committed, nor the reverse.
	<-req.done
	if req.err != nil || req.res.DuplicateOf != "" {
		return req.res, req.err
	}
	*run = req.out
	return req.res, nil
}

// batcher commits creates in groups, like bbolt's batched writer: while one transaction
// commits, the next group gathers.
func (s *Store) batcher() {
	defer s.batcherWG.Done()
	batches(s.creates, s.stop, s.maxBatch, s.commitBatch)
}

// batches hands what arrives on in to commit in groups of at most max: everything already
// waiting joins the first, so while one group commits the next gathers. After stop, what
// is still buffered is committed one at a time (Close holds sendMu: nothing more arrives).
func batches[T any](in <-chan T, stop <-chan struct{}, max int, commit func([]T)) {
	for {
		var first T
		select {
		case first = <-in:
		case <-stop:
			for {
				select {
				case r := <-in:
					commit([]T{r})
				default:
					return
				}
			}
		}
		batch := []T{first}
	gather:
		for len(batch) < max {
			select {
			case r := <-in:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		commit(batch)
	}
}

func (s *Store) commitBatch(batch []*createReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	alone := false // the multi-row insert failed as a whole: every create goes alone
	for range 5 {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			keys := []string{}
			var plain, other []*createReq
			check := false // a plain create checks MaxRunnable: read the count
			for _, q := range batch {
				q.res, q.err = store.CreateResult{}, nil
				keys = append(keys, q.run.SerializeKey, q.run.DebounceKey, q.run.IdempotencyKey, q.run.MessageKey)
				if q.opts.MaxRunnable > 0 {
					keys = append(keys, runnableLock)
				}
				if alone || !isPlain(q) {
					other = append(other, q)
					continue
				}
				plain = append(plain, q)
				if q.run.Status.Runnable() {
					check = check || q.opts.MaxRunnable > 0
				}
			}
			// The locks and the plain creates' runnable count go in one round trip: the
			// count comes after the locks (a statement of its own, so its snapshot is
			// taken once runnableLock is held).
			runnable, err := lockAndCount(ctx, tx, keys, check)
			if err != nil {
				return err
			}
			if len(plain) > 0 {
				if err := s.createPlain(ctx, tx, plain, runnable); err != nil {
					return err
				}
			}
			for _, q := range other {
				if err := s.createAlone(ctx, tx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, errPlainInsert) && !alone {
			// Again, one create at a time, so the bad one fails alone.
			alone = true
			continue
		}
		if !retryable(err) {
			break
		}
	}
	for _, q := range batch {
		if err != nil {
			q.err, q.res = wrap("create run", err), store.CreateResult{}
		} else if q.err != nil {
			q.err = wrap("create run", q.err)
		}
		close(q.done)
	}
}

// createIn is one create inside the batch's transaction; the keys it checks are locked.
func (s *Store) createIn(ctx context.Context, tx pgx.Tx, q *createReq) error {
	q.out = q.run // a copy: ClaimRun below must not change what a retry starts from
	r, now := &q.out, q.now
	claims := store.KeyClaims(r, q.opts, now)
	for _, c := range claims {
		var rid []byte
		var exp int64
		err := tx.QueryRow(ctx, "SELECT run_id, expires FROM run_keys WHERE key = $1", []byte(c.Key)).Scan(&rid, &exp)
		if err == nil && nanos(now) < exp {
			q.res.DuplicateOf = store.RunID(rid).String()
			return nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	parked := false
	if r.SerializeKey != "" && !r.Status.Final() {
		// Any unfinished run of the key parks this one: runs from several processes arrive
		// in commit order (the key's advisory lock orders them), which their ids, made by
		// each process's own generator, need not follow within a millisecond.
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM runs WHERE serialize_key = $1 AND NOT final)`,
			[]byte(r.SerializeKey)).Scan(&parked); err != nil {
			return err
		}
	}
	take := q.opts.Owner != "" && r.Status == store.StatusQueued && !parked
	// Full refuses a run a worker would take too (store.CreateOptions.MaxRunnable).
	if r.Status.Runnable() && q.opts.MaxRunnable > 0 {
		var n int
		var rows int
		if err := tx.QueryRow(ctx, runnableSQL).Scan(&n, &rows); err != nil {
			return err
		}
		if n >= q.opts.MaxRunnable {
			return fmt.Errorf("%w: %d runs are queued or waiting", store.ErrFull, q.opts.MaxRunnable)
		}
	}
	for _, c := range claims {
		if _, err := tx.Exec(ctx, `INSERT INTO run_keys (key, run_id, expires) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET run_id = excluded.run_id, expires = excluded.expires`,
			[]byte(c.Key), q.id[:], nanos(c.Expires)); err != nil {
			return err
		}
	}
	if r.DebounceKey != "" && !r.Status.Final() {
		rows, err := tx.Query(ctx, `SELECT id, rec FROM runs WHERE debounce_key = $1 AND NOT final
			AND status IN ('queued', 'waiting') ORDER BY id FOR UPDATE`, []byte(r.DebounceKey))
		if err != nil {
			return err
		}
		var olds []*store.Run
		for rows.Next() {
			var oid, rec []byte
			if err := rows.Scan(&oid, &rec); err != nil {
				rows.Close()
				return err
			}
			o, err := decode(oid, rec, true)
			if err != nil {
				rows.Close()
				return err
			}
			olds = append(olds, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, o := range olds {
			if !store.Supersedable(o) {
				continue
			}
			store.Supersede(o, r.ID, now)
			if err := lockKeys(ctx, tx, o.SerializeKey); err != nil {
				return err
			}
			if err := s.write(ctx, tx, o, now); err != nil {
				return err
			}
			q.res.Superseded = append(q.res.Superseded, o.ID)
		}
	}
	var rw runRow
	rw.add(q, take, parked)
	tag, err := tx.Exec(ctx, `INSERT INTO runs (`+runCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (id) DO NOTHING`,
		rw.args(func(c []any) any { return c[0] })...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: run %s already exists", store.ErrInvalid, r.ID)
	}
	if rw.wake {
		return notify(ctx, tx)
	}
	return nil
}

// createAlone is one create in its own savepoint, so that its failure leaves the batch's
// others; the error returned aborts the whole transaction (a deadlock, a lost connection).
func (s *Store) createAlone(ctx context.Context, tx pgx.Tx, q *createReq) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	q.err = s.createIn(ctx, sp, q)
	if q.err != nil || q.res.DuplicateOf != "" {
		if err := sp.Rollback(ctx); err != nil {
			return err
		}
		if retryable(q.err) {
			return q.err
		}
		return nil
	}
	return sp.Commit(ctx)
}

// isPlain says whether q's create needs no look-up of other runs: no idempotency or
// message key to claim, no serialize_by or debounce key. Most accepts are plain, and
// plain creates go into one multi-row INSERT per batch (createPlain) instead of a
// savepoint and several round trips each, which bounded a batch's commit by its round
// trips rather than by its flush.
func isPlain(q *createReq) bool {
	r := &q.run
	return r.IdempotencyKey == "" && r.MessageKey == "" && r.SerializeKey == "" && r.DebounceKey == "" &&
		len(store.KeyClaims(r, q.opts, q.now)) == 0
}

// errPlainInsert is a multi-row insert of plain creates that failed as a whole: the batch
// is committed again with each create alone.
var errPlainInsert = errors.New("multi-row insert of plain creates failed")

// createPlain inserts plain creates, and notifies workers, with one pipelined round trip;
// runnable is the count of queued or waiting runs taken under runnableLock for the batch's
// MaxRunnable checks. An insert that fails as a whole is errPlainInsert, which aborts the
// transaction (no savepoint: the rare failure costs a second transaction, not every batch
// two more round trips); an id already stored fails its create alone.
func (s *Store) createPlain(ctx context.Context, tx pgx.Tx, batch []*createReq, runnable int) error {
	var rw runRow
	var in []*createReq
	for _, q := range batch {
		q.out, q.res, q.err = q.run, store.CreateResult{}, nil
		take := q.opts.Owner != "" && q.run.Status == store.StatusQueued
		// Full refuses a run a worker would take too (store.CreateOptions.MaxRunnable); only
		// one that is not taken adds to the count.
		if q.run.Status.Runnable() && q.opts.MaxRunnable > 0 {
			if runnable >= q.opts.MaxRunnable {
				q.err = fmt.Errorf("%w: %d runs are queued or waiting", store.ErrFull, q.opts.MaxRunnable)
				continue
			}
			if !take {
				runnable++
			}
		}
		rw.add(q, take, false)
		in = append(in, q)
	}
	if len(in) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO runs (`+runCols+`)
		SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[], $6::bytea[], $7::bytea[],
		$8::bytea[], $9::bytea[], $10::bytea[], $11::bytea[], $12::bool[], $13::bool[], $14::int8[], $15::bytea[],
		$16::int8[], $17::int8[], $18::bytea[]) ON CONFLICT (id) DO NOTHING RETURNING id`,
		rw.args(typedArray)...)
	if rw.wake {
		// In the same pipeline: skipped by the server if the insert fails.
		b.Queue("SELECT pg_notify($1, '')", notifyChannel)
	}
	br := tx.SendBatch(ctx, b)
	stored := map[store.RunID]bool{}
	rows, err := br.Query()
	if err == nil {
		for rows.Next() {
			var id []byte
			if err = rows.Scan(&id); err != nil {
				break
			}
			stored[store.RunID(id)] = true
		}
		rows.Close()
		err = cmpErr(err, rows.Err())
	}
	if err == nil && rw.wake {
		_, err = br.Exec()
	}
	err = cmpErr(err, br.Close())
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && !retryable(err) {
			return fmt.Errorf("%w: %w", errPlainInsert, err)
		}
		return err
	}
	for _, q := range in {
		if !stored[q.id] {
			q.res = store.CreateResult{}
			q.err = fmt.Errorf("%w: run %s already exists", store.ErrInvalid, q.out.ID)
		}
	}
	return nil
}

// typedArray turns a column of values into the typed slice pgx encodes as that column's
// array type (bytea[], text[], bool[], int8[] with NULLs).
func typedArray(c []any) any {
	switch c[0].(type) {
	case []byte:
		return typed[[]byte](c)
	case string:
		return typed[string](c)
	case bool:
		return typed[bool](c)
	case *int64:
		return typed[*int64](c)
	case int64:
		return typed[int64](c)
	}
	panic(fmt.Sprintf("postgres: no array type for %T", c[0]))
}

func typed[T any](c []any) []T {
	out := make([]T, len(c))
	for i, v := range c {
		out[i] = v.(T)
	}
	return out
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// runCols are the runs columns a create writes, in runRow's order.
const runCols = `id, partner, site, endpoint, status, saga, idem_key, replay_of, retry_of, serialize_key,
	debounce_key, final, parked, due_at, lease_owner, lease_token, lease_expires, rec`

// runRow gathers the column values of one or more creates, column by column.
type runRow struct {
	cols [18][]any
	wake bool // a run is due now for any worker: notify
}

// add appends q's run as it will be stored: claimed by q.opts.Owner when take (its lease
// goes into q.res), parked behind its serialize_by key when parked.
func (rw *runRow) add(q *createReq, take, parked bool) {
	r, now := &q.out, q.now
	var owner string
	var token, expires int64
	if take {
		store.ClaimRun(r, now)
		l := store.Lease{RunID: r.ID, Owner: q.opts.Owner, Token: 1, Expires: now.Add(q.opts.LeaseTTL)}
		q.res.Lease = &l
		owner, token, expires = l.Owner, 1, nanos(l.Expires)
	}
	var due *int64
	if !r.Status.Final() {
		d := nanos(store.DueAt(r, store.NanosTime(expires), now))
		if expires == 0 {
			d = nanos(store.DueAt(r, time.Time{}, now))
		}
		due = &d
	}
	rw.wake = rw.wake || (due != nil && !parked && !take)
	for i, v := range []any{q.id[:], []byte(r.Partner), []byte(r.Site), []byte(r.Endpoint), string(r.Status), []byte(r.Saga),
		[]byte(r.IdempotencyKey), []byte(r.ReplayOf), []byte(r.RetryOf), []byte(r.SerializeKey), []byte(r.DebounceKey),
		r.Status.Final(), parked, due, []byte(owner), token, expires, store.EncodeRun(nil, r, r.Request.Body)} {
		rw.cols[i] = append(rw.cols[i], v)
	}
}

// args are the statement's arguments: each column through f (its one value, or the
// column as a typed array for unnest).
func (rw *runRow) args(f func([]any) any) []any {
	out := make([]any, len(rw.cols))
	for i, c := range rw.cols {
		out[i] = f(c)
	}
	return out
}

func notify(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel)
	return err
}

func decode(id, rec []byte, full bool) (*store.Run, error) {
	if len(id) != 16 {
		return nil, fmt.Errorf("%w: id of %d bytes", store.ErrCorrupt, len(id))
	}
	r := &store.Run{ID: store.RunID(id).String()}
	body, err := store.DecodeRun(rec, r, full)
	if err != nil {
		return nil, err
	}
	if full {
		r.Request.Body = body
	}
	return r, nil
}

// write stores r, a stored run changed in place, and files it in the queue as the memory
// store's reschedule does: a running run keeps its lease, any other status drops it. When
// r became final, the next run parked behind it (serialize_by) is unparked; the caller
// holds that key's advisory lock. Its statements go in one round trip.
func (s *Store) write(ctx context.Context, tx pgx.Tx, r *store.Run, now time.Time) error {
	b := &pgx.Batch{}
	wake, err := queueWrite(b, r, now)
	if err != nil {
		return err
	}
	if wake {
		b.Queue("SELECT pg_notify($1, '')", notifyChannel)
	}
	return tx.SendBatch(ctx, b).Close()
}

// unparkSQL unparks the first unfinished run of a serialize_by key, when parked, and
// announces it: the notify runs once per row unparked.
const unparkSQL = `WITH u AS (UPDATE runs SET parked = false WHERE id = (SELECT id FROM runs
	WHERE serialize_key = $1 AND NOT final ORDER BY seq LIMIT 1) AND parked RETURNING 1)
	SELECT pg_notify($2, '') FROM u`

// queueWrite queues write's statements for r on b, and reports whether workers must be
// notified that r fell due; a run it unparks is announced by its own statement.
func queueWrite(b *pgx.Batch, r *store.Run, now time.Time) (wake bool, err error) {
	id, err := store.ParseRunID(r.ID)
	if err != nil {
		return false, err
	}
	rec := store.EncodeRun(nil, r, r.Request.Body)
	if r.Status.Final() {
		b.Queue(`UPDATE runs SET status = $2, final = true, parked = false, due_at = NULL,
			lease_owner = ''::bytea, lease_expires = 0, rec = $3 WHERE id = $1`, id[:], string(r.Status), rec)
		if r.SerializeKey != "" {
			b.Queue(unparkSQL, []byte(r.SerializeKey), notifyChannel)
		}
		return false, nil
	}
	if r.Status == store.StatusRunning {
		// Keeps its lease: due when the lease expires, at once when it has none.
		b.Queue(`UPDATE runs SET status = $2, rec = $3,
			due_at = CASE WHEN lease_expires = 0 THEN $4 ELSE lease_expires END WHERE id = $1`,
			id[:], string(r.Status), rec, nanos(now))
		return false, nil
	}
	due := nanos(store.DueAt(r, time.Time{}, now))
	b.Queue(`UPDATE runs SET status = $2, due_at = $3, lease_owner = ''::bytea, lease_expires = 0,
		rec = $4 WHERE id = $1`, id[:], string(r.Status), due, rec)
	return true, nil
}

// lockRun locks run id for a write that may make it final: first its serialize_by key's
// advisory lock (the key never changes, so it is read unlocked), then the row, in the
// order every writer takes them.
func lockRun(ctx context.Context, tx pgx.Tx, id store.RunID, final bool) (r *store.Run, st stored, err error) {
	if final {
		var key []byte
		err := tx.QueryRow(ctx, "SELECT serialize_key FROM runs WHERE id = $1", id[:]).Scan(&key)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, st, err
		}
		if err := lockKeys(ctx, tx, string(key)); err != nil {
			return nil, st, err
		}
	}
	var rec, owner []byte
	err = tx.QueryRow(ctx, `SELECT rec, lease_owner, lease_token, lease_expires FROM runs WHERE id = $1 FOR UPDATE`,
		id[:]).Scan(&rec, &owner, &st.token, &st.expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, st, fmt.Errorf("run %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, st, err
	}
	st.owner = string(owner)
	r, err = decode(id[:], rec, true)
	return r, st, err
}

type stored struct {
	owner   string
	token   int64
	expires int64
}

func (st stored) held(r *store.Run, l store.Lease) bool {
	return store.LeaseHeld(r.Status, uint64(st.token), st.owner, store.NanosTime(st.expires), l) && st.expires != 0
}

func (s *Store) Update(ctx context.Context, run *store.Run) error {
	id, err := store.ParseRunID(run.ID)
	if err != nil {
		return err
	}
	if run.Status != "" && !run.Status.Valid() {
		return fmt.Errorf("%w: status %q", store.ErrInvalid, run.Status)
	}
	now := s.clock.Now()
	var out store.Run
	err = s.tx(ctx, "update run", func(tx pgx.Tx) error {
		stored, _, err := lockRun(ctx, tx, id, run.Status.Final() || run.Status == "")
		if err != nil {
			return err
		}
		in := *run
		if err := store.ApplyUpdate(stored, &in, now); err != nil {
			return err
		}
		out = *stored
		return s.write(ctx, tx, stored, now)
	})
	if err != nil {
		return err
	}
	run.Status, run.UpdatedAt, run.FinishedAt = out.Status, out.UpdatedAt, out.FinishedAt
	return nil
}

func (s *Store) GetRun(ctx context.Context, id string) (*store.Run, error) {
	rid, err := store.ParseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("get run: %w", err)
	}
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	var rec []byte
	err = s.pool.QueryRow(ctx, "SELECT rec FROM runs WHERE id = $1", rid[:]).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get run %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, wrap("get run", err)
	}
	return decode(rid[:], rec, true)
}

// whereFor appends to sel the WHERE clause of q's filter, each column answered by an index
// (see the package doc), and the id bounds of its time window; it returns the statement so
// far and its arguments.
func whereFor(q store.ListQuery, sel string) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1))
	}
	qf := q.Filter
	for _, c := range []struct {
		col, v string
	}{{"partner", qf.Partner}, {"site", qf.Site}, {"endpoint", qf.Endpoint}, {"status", string(qf.Status)},
		{"saga", qf.Saga}, {"idem_key", qf.IdempotencyKey}, {"replay_of", qf.ReplayOf}, {"retry_of", qf.RetryOf}} {
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
	if len(where) > 0 {
		sel += " WHERE " + strings.Join(where, " AND ")
	}
	return sel, args
}

// List runs one query: every filter has an index ordered by id (see the package doc), and
// ids bound the page, so a page reads at most Limit+1 index entries past the ones filtered.
func (s *Store) List(ctx context.Context, f store.Filter) ([]*store.Run, string, error) {
	q, err := store.NewListQuery(f)
	if err != nil {
		return nil, "", err
	}
	if err := s.begin(ctx); err != nil {
		return nil, "", err
	}
	sqlText, args := whereFor(q, "SELECT id, rec FROM runs")
	if q.Desc {
		sqlText += " ORDER BY id DESC"
	} else {
		sqlText += " ORDER BY id"
	}
	args = append(args, q.Limit+1)
	sqlText += " LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, "", wrap("list runs", err)
	}
	defer rows.Close()
	var out []*store.Run
	more := false
	for rows.Next() {
		if len(out) == q.Limit {
			more = true
			break
		}
		var id, rec []byte
		if err := rows.Scan(&id, &rec); err != nil {
			return nil, "", wrap("list runs", err)
		}
		r, err := decode(id, rec, false)
		if err != nil {
			return nil, "", fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", wrap("list runs", err)
	}
	if more {
		last, _ := store.ParseRunID(out[len(out)-1].ID)
		return out, store.EncodeCursor(last), nil
	}
	return out, "", nil
}

func (s *Store) Unfinished(ctx context.Context) ([]*store.Run, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT id, rec FROM runs WHERE NOT final ORDER BY id")
	if err != nil {
		return nil, wrap("unfinished runs", err)
	}
	defer rows.Close()
	var out []*store.Run
	for rows.Next() {
		var id, rec []byte
		if err := rows.Scan(&id, &rec); err != nil {
			return nil, wrap("unfinished runs", err)
		}
		r, err := decode(id, rec, true)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, wrap("unfinished runs", rows.Err())
}

// pruneChunk bounds the rows one prune transaction deletes, so accepts are not held up.
const pruneChunk = 1000

func (s *Store) Prune(ctx context.Context, before time.Time, maxRuns int) (int, error) {
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	now := nanos(s.clock.Now())
	excess := 0
	if maxRuns > 0 {
		var n int
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM runs").Scan(&n); err != nil {
			return 0, wrap("prune", err)
		}
		excess = max(n-maxRuns, 0)
	}
	deleted := 0
	del := func(bound []byte, limit int) (int, error) {
		var n int64
		err := s.tx(ctx, "prune", func(tx pgx.Tx) error {
			var ids [][]byte
			rows, err := tx.Query(ctx, `DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE final
				AND ($1::bytea IS NULL OR id < $1) ORDER BY id LIMIT $2) RETURNING id`, bound, limit)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id []byte
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			n = int64(len(ids))
			if len(ids) > 0 {
				_, err = tx.Exec(ctx, "DELETE FROM run_keys WHERE run_id = ANY($1)", ids)
			}
			return err
		})
		return int(n), err
	}
	if !before.IsZero() {
		b := store.FirstIDAt(before)
		for {
			n, err := del(b[:], pruneChunk)
			deleted += n
			if err != nil {
				return deleted, err
			}
			if n < pruneChunk {
				break
			}
		}
	}
	for deleted < excess {
		n, err := del(nil, min(pruneChunk, excess-deleted))
		deleted += n
		if err != nil {
			return deleted, err
		}
		if n == 0 {
			break
		}
	}
	err := s.tx(ctx, "prune", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM run_keys WHERE expires <= $1", now); err != nil {
			return err
		}
		return sweepKV(ctx, tx, now)
	})
	return deleted, err
}
