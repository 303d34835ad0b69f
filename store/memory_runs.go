package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is a Store in memory: for tests, and as the reference the contract tests hold the
// durable stores to. Runs are kept encoded, so copies and time normalisation behave exactly
// as in the bolt store. Nothing survives a restart.
type Memory struct {
	*MemoryKV
	clock Clock
	ids   idGen

	mu     sync.Mutex
	closed bool
	runs   map[runID][]byte
	order  []runID                     // sorted ascending
	idem   map[string]memIdem          // idempotency and message keys
	sagas  map[string][]memSagaVersion // versions in number order; Prune leaves them
	memQueue
}

type memIdem struct {
	id      runID
	expires time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store; a nil clock is the system clock.
func NewMemory(clock Clock) *Memory {
	if clock == nil {
		clock = systemClock{}
	}
	return &Memory{
		MemoryKV: NewMemoryKV(clock),
		clock:    clock,
		runs:     map[runID][]byte{},
		idem:     map[string]memIdem{},
		memQueue: newMemQueue(),
	}
}

// Close makes later run calls fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *Memory) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (m *Memory) load(id runID, full bool) *Run {
	rec, ok := m.runs[id]
	if !ok {
		return nil
	}
	r := &Run{ID: id.String()}
	body, err := decodeRun(rec, r, full)
	if err != nil {
		panic(fmt.Sprintf("memory store: %v", err)) // we encoded it ourselves
	}
	r.Request.Body = body
	return r
}

func (m *Memory) save(id runID, r *Run) {
	if _, ok := m.runs[id]; !ok {
		i, _ := slices.BinarySearchFunc(m.order, id, cmpID)
		m.order = slices.Insert(m.order, i, id)
	}
	m.runs[id] = encodeRun(nil, r, r.Request.Body)
}

func cmpID(a, b runID) int { return bytes.Compare(a[:], b[:]) }

func (m *Memory) Create(ctx context.Context, run *Run, opts CreateOptions) (CreateResult, error) {
	var res CreateResult
	now := m.clock.Now()
	r, id, err := prepareCreate(run, now, &m.ids)
	if err != nil {
		return res, err
	}
	if err := m.begin(ctx); err != nil {
		return res, err
	}
	defer m.mu.Unlock()
	if _, ok := m.runs[id]; ok {
		return res, fmt.Errorf("%w: run %s already exists", ErrInvalid, r.ID)
	}
	if opts.Owner != "" {
		if err := checkClaimArgs(opts.Owner, opts.LeaseTTL); err != nil {
			return res, err
		}
	}
	claims := runClaims(&r, opts, now)
	for _, c := range claims {
		if e, ok := m.idem[c.key]; ok && now.Before(e.expires) {
			res.DuplicateOf = e.id.String()
			return res, nil
		}
	}
	take := opts.Owner != "" && r.Status == StatusQueued && len(m.serial[r.SerializeKey]) == 0
	if !take && runnable(r.Status) && opts.MaxRunnable > 0 && m.runnable >= opts.MaxRunnable {
		return res, fmt.Errorf("create run: %w: %d runs are queued or waiting", ErrFull, opts.MaxRunnable)
	}
	for _, c := range claims {
		m.idem[c.key] = memIdem{id: id, expires: c.expires}
	}
	if r.DebounceKey != "" && !r.Status.Final() {
		for _, oid := range slices.Clone(m.debounce[r.DebounceKey]) { // reschedule edits it
			o := m.load(oid, true)
			if o.Status == StatusQueued || o.Status == StatusWaiting {
				old := o.Status
				supersede(o, now)
				m.save(oid, o)
				m.reschedule(oid, o, old, nil, now)
				res.Superseded = append(res.Superseded, o.ID)
			}
		}
	}
	var lease *Lease
	if take {
		claimRun(&r, now)
		lease = &Lease{RunID: r.ID, Owner: opts.Owner, Token: 1, Expires: now.Add(opts.LeaseTTL)}
		res.Lease = lease
	}
	m.save(id, &r)
	m.reschedule(id, &r, "", lease, now)
	*run = r
	return res, nil
}

func (m *Memory) Update(ctx context.Context, run *Run) error {
	id, err := parseRunID(run.ID)
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
		return fmt.Errorf("update run %s: %w", run.ID, ErrNotFound)
	}
	in := *run
	old := stored.Status
	if err := applyUpdate(stored, &in, now); err != nil {
		return err
	}
	m.save(id, stored)
	m.reschedule(id, stored, old, nil, now)
	run.Status, run.UpdatedAt, run.FinishedAt = stored.Status, stored.UpdatedAt, stored.FinishedAt
	return nil
}

func (m *Memory) GetRun(ctx context.Context, id string) (*Run, error) {
	rid, err := parseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("get run: %w", err)
	}
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	r := m.load(rid, true)
	if r == nil {
		return nil, fmt.Errorf("get run %s: %w", id, ErrNotFound)
	}
	return r, nil
}

// List scans: the memory store is for tests, where stores are small.
func (m *Memory) List(ctx context.Context, f Filter) ([]*Run, string, error) {
	q, err := newListQuery(f)
	if err != nil {
		return nil, "", err
	}
	if err := m.begin(ctx); err != nil {
		return nil, "", err
	}
	defer m.mu.Unlock()
	var out []*Run
	var last runID
	visit := func(id runID) bool {
		if !q.inRange(id) {
			return true
		}
		r := m.load(id, false)
		if !q.matches(r) {
			return true
		}
		if len(out) == q.limit {
			return false // one more exists: there is a next page
		}
		out = append(out, r)
		last = id
		return true
	}
	more := false
	if q.desc {
		for i := len(m.order) - 1; i >= 0 && !more; i-- {
			more = !visit(m.order[i])
		}
	} else {
		for i := 0; i < len(m.order) && !more; i++ {
			more = !visit(m.order[i])
		}
	}
	if more {
		return out, encodeCursor(last), nil
	}
	return out, "", nil
}

func (m *Memory) Unfinished(ctx context.Context) ([]*Run, error) {
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []*Run
	for _, id := range m.order {
		r := m.load(id, true)
		if !r.Status.Final() {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *Memory) Prune(ctx context.Context, before time.Time, maxRuns int) (int, error) {
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	var beforeID *runID
	if !before.IsZero() {
		id := msID(before)
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
	m.MemoryKV.sweepExpired()
	return deleted, nil
}
