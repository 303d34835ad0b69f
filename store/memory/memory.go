// Package memory is a store.Store held in process memory: for tests, and the reference the
// contract suite (storetest) holds durable backends to. It keeps runs encoded with
// store.EncodeRun, so copies and times behave as in a durable store.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// Store is a store.Store in memory: for tests, and as the reference the contract tests hold the
// durable stores to. Runs are kept encoded, so copies and time normalisation behave exactly
// as in the bolt store. Nothing survives a restart.
type Store struct {
	*KV
	clock store.Clock
	ids   store.IDGen

	mu     sync.Mutex
	closed bool
	runs   map[store.RunID][]byte
	order  []store.RunID               // sorted ascending
	idem   map[string]memIdem          // idempotency and message keys
	sagas  map[string][]memSagaVersion // versions in number order; Prune leaves them
	memQueue
}

type memIdem struct {
	id      store.RunID
	expires time.Time
}

var _ store.Store = (*Store)(nil)

// New returns an empty Store; a nil clock is the system clock.
func New(clock store.Clock) *Store {
	if clock == nil {
		clock = store.SystemClock{}
	}
	return &Store{
		KV:       NewKV(clock),
		clock:    clock,
		runs:     map[store.RunID][]byte{},
		idem:     map[string]memIdem{},
		memQueue: newMemQueue(),
	}
}

// Close makes later run calls fail with ErrClosed.
func (m *Store) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

func (m *Store) load(id store.RunID, full bool) *store.Run {
	rec, ok := m.runs[id]
	if !ok {
		return nil
	}
	r := &store.Run{ID: id.String()}
	body, err := store.DecodeRun(rec, r, full)
	if err != nil {
		panic(fmt.Sprintf("memory store: %v", err)) // we encoded it ourselves
	}
	r.Request.Body = body
	return r
}

func (m *Store) save(id store.RunID, r *store.Run) {
	if _, ok := m.runs[id]; !ok {
		i, _ := slices.BinarySearchFunc(m.order, id, cmpID)
		m.order = slices.Insert(m.order, i, id)
	}
	m.runs[id] = store.EncodeRun(nil, r, r.Request.Body)
}

func cmpID(a, b store.RunID) int { return bytes.Compare(a[:], b[:]) }

func (m *Store) Create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error) {
	var res store.CreateResult
	now := m.clock.Now()
	r, id, err := store.PrepareCreate(run, now, &m.ids)
	if err != nil {
		return res, err
	}
	if err := m.begin(ctx); err != nil {
		return res, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[id]; ok {
		return res, fmt.Errorf("%w: run %s already exists", store.ErrInvalid, r.ID)
	}
	if opts.Owner != "" {
		if err := store.CheckClaimArgs(opts.Owner, opts.LeaseTTL); err != nil {
			return res, err
		}
	}
	claims := store.KeyClaims(&r, opts, now)
	for _, c := range claims {
		if e, ok := m.idem[c.Key]; ok && now.Before(e.expires) {
			res.DuplicateOf = e.id.String()
			return res, nil
		}
	}
	take := opts.Owner != "" && r.Status == store.StatusQueued && len(m.serial[r.SerializeKey]) == 0
	// Full refuses a run a worker would take too (store.CreateOptions.MaxRunnable).
	if r.Status.Runnable() && opts.MaxRunnable > 0 && m.runnable >= opts.MaxRunnable {
		return res, fmt.Errorf("create run: %w: %d runs are queued or waiting", store.ErrFull, opts.MaxRunnable)
	}
	for _, c := range claims {
		m.idem[c.Key] = memIdem{id: id, expires: c.Expires}
	}
	if r.DebounceKey != "" && !r.Status.Final() {
		for _, oid := range slices.Clone(m.debounce[r.DebounceKey]) { // reschedule edits it
			o := m.load(oid, true)
			if store.Supersedable(o) {
				old := o.Status
				store.Supersede(o, r.ID, now)
				m.save(oid, o)
				m.reschedule(oid, o, old, nil, now)
				res.Superseded = append(res.Superseded, o.ID)
			}
		}
	}
	var lease *store.Lease
	if take {
		store.ClaimRun(&r, now)
		lease = &store.Lease{RunID: r.ID, Owner: opts.Owner, Token: 1, Expires: now.Add(opts.LeaseTTL)}
		res.Lease = lease
	}
	m.save(id, &r)
	m.reschedule(id, &r, "", lease, now)
	*run = r
	return res, nil
}

func (m *Store) Update(ctx context.Context, run *store.Run) error {
	id, err := store.ParseRunID(run.ID)
	if err != nil {
		return err
	}
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	stored := m.load(id, true)
	if stored == nil {
		return fmt.Errorf("update run %s: %w", run.ID, store.ErrNotFound)
	}
	in := *run
	old := stored.Status
	if err := store.ApplyUpdate(stored, &in, now); err != nil {
		return err
	}
	m.save(id, stored)
	m.reschedule(id, stored, old, nil, now)
	run.Status, run.UpdatedAt, run.FinishedAt = stored.Status, stored.UpdatedAt, stored.FinishedAt
	return nil
}

func (m *Store) GetRun(ctx context.Context, id string) (*store.Run, error) {
	rid, err := store.ParseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("get run: %w", err)
	}
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	r := m.load(rid, true)
	if r == nil {
		return nil, fmt.Errorf("get run %s: %w", id, store.ErrNotFound)
	}
	return r, nil
}

// List scans: the memory store is for tests, where stores are small.
func (m *Store) List(ctx context.Context, f store.Filter) ([]*store.Run, string, error) {
	q, err := store.NewListQuery(f)
	if err != nil {
		return nil, "", err
	}
	if err := m.begin(ctx); err != nil {
		return nil, "", err
	}
	defer m.mu.Unlock()
	var out []*store.Run
	var last store.RunID
	visit := func(id store.RunID) bool {
		if !q.InRange(id) {
			return true
		}
		r := m.load(id, false)
		if !q.Matches(r) {
			return true
		}
		if len(out) == q.Limit {
			return false // one more exists: there is a next page
		}
		out = append(out, r)
		last = id
		return true
	}
	more := false
	if q.Desc {
		for i := len(m.order) - 1; i >= 0 && !more; i-- {
			more = !visit(m.order[i])
		}
	} else {
		for i := 0; i < len(m.order) && !more; i++ {
			more = !visit(m.order[i])
		}
	}
	if more {
		return out, store.EncodeCursor(last), nil
	}
	return out, "", nil
}

func (m *Store) Unfinished(ctx context.Context) ([]*store.Run, error) {
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []*store.Run
	for _, id := range m.order {
		r := m.load(id, true)
		if !r.Status.Final() {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *Store) Prune(ctx context.Context, before time.Time, maxRuns int) (int, error) {
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	var beforeID *store.RunID
	if !before.IsZero() {
		id := store.FirstIDAt(before)
		beforeID = &id
	}
	excess := 0
	if maxRuns > 0 && len(m.order) > maxRuns {
		excess = len(m.order) - maxRuns
	}
	deleted := 0
	kept := m.order[:0]
	for _, id := range m.order {
		r := m.load(id, false)
		drop := false
		if r.Status.Final() {
			if beforeID != nil && bytes.Compare(id[:], beforeID[:]) < 0 {
				drop = true
			} else if excess > deleted {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, id)
			continue
		}
		delete(m.runs, id)
		for _, k := range [...]string{r.IdempotencyKey, r.MessageKey} {
			if e, ok := m.idem[k]; ok && k != "" && e.id == id {
				delete(m.idem, k)
			}
		}
		deleted++
	}
	clear(m.order[len(kept):])
	m.order = kept
	for k, e := range m.idem {
		if !now.Before(e.expires) {
			delete(m.idem, k)
		}
	}
	m.KV.sweepExpired()
	return deleted, nil
}
