package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
)

// memQueue is Memory's work queue: the same rules as the bolt one (queue.go), kept in maps.
// Claims scan the unfinished runs: the memory store is for tests, where they are few.
type memQueue struct {
	entries  map[runID]*memEntryQ // unfinished runs
	serial   map[string][]runID   // serialize_by key -> unfinished runs, ascending
	debounce map[string][]runID   // debounce key -> unfinished runs, ascending
	runnable int
}

type memEntryQ struct {
	due     time.Time
	token   uint64
	expires time.Time
	owner   string
	parked  bool
}

func newMemQueue() memQueue {
	return memQueue{entries: map[runID]*memEntryQ{}, serial: map[string][]runID{}, debounce: map[string][]runID{}}
}

func insertID(ids []runID, id runID) []runID {
	i, found := slices.BinarySearchFunc(ids, id, cmpID)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

func removeID(ids []runID, id runID) []runID {
	if i, found := slices.BinarySearchFunc(ids, id, cmpID); found {
		return slices.Delete(ids, i, i+1)
	}
	return ids
}

// reschedule is bolt's reschedule over the maps. Caller holds m.mu.
func (q *memQueue) reschedule(id runID, r *Run, old Status, lease *Lease, now time.Time) {
	q.runnable += boolInt(runnable(r.Status)) - boolInt(old != "" && runnable(old))
	e, had := q.entries[id]
	if r.Status.Final() {
		if !had {
			return
		}
		delete(q.entries, id)
		if k := r.DebounceKey; k != "" {
			if q.debounce[k] = removeID(q.debounce[k], id); len(q.debounce[k]) == 0 {
				delete(q.debounce, k)
			}
		}
		if k := r.SerializeKey; k != "" {
			if q.serial[k] = removeID(q.serial[k], id); len(q.serial[k]) == 0 {
				delete(q.serial, k)
			} else if next := q.entries[q.serial[k][0]]; next != nil {
				next.parked = false
			}
		}
		return
	}
	if !had {
		e = &memEntryQ{}
		q.entries[id] = e
		if k := r.DebounceKey; k != "" {
			q.debounce[k] = insertID(q.debounce[k], id)
		}
		if k := r.SerializeKey; k != "" {
			q.serial[k] = insertID(q.serial[k], id)
			e.parked = q.serial[k][0] != id
		}
	}
	switch {
	case lease != nil:
		e.token, e.owner, e.expires = lease.Token, lease.Owner, lease.Expires
	case r.Status != StatusRunning:
		e.owner, e.expires = "", time.Time{}
	}
	e.due = dueAt(r, e.expires, now)
}

func (m *Memory) Claim(ctx context.Context, owner string, limit int, ttl time.Duration) (ClaimResult, error) {
	if err := checkClaimArgs(owner, ttl); err != nil {
		return ClaimResult{}, err
	}
	limit = max(limit, 1)
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return ClaimResult{}, err
	}
	defer m.mu.Unlock()
	type due struct {
		id runID
		at time.Time
	}
	var all []due
	for id, e := range m.entries {
		if !e.parked {
			all = append(all, due{id, e.due})
		}
	}
	slices.SortFunc(all, func(a, b due) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	var res ClaimResult
	for _, d := range all {
		if len(res.Runs) == limit || d.at.After(now) {
			break
		}
		r := m.load(d.id, true)
		e := m.entries[d.id]
		old := r.Status
		claimRun(r, now)
		l := Lease{RunID: r.ID, Owner: owner, Token: e.token + 1, Expires: now.Add(ttl)}
		m.save(d.id, r)
		m.reschedule(d.id, r, old, &l, now)
		res.Runs = append(res.Runs, Claimed{Run: r, Lease: l})
	}
	for _, e := range m.entries {
		if !e.parked && (res.Next.IsZero() || e.due.Before(res.Next)) {
			res.Next = e.due
		}
	}
	return res, nil
}

func (m *Memory) Renew(ctx context.Context, leases []Lease, ttl time.Duration) ([]string, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("renew leases: %w: ttl %s", ErrInvalid, ttl)
	}
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var lost []string
	for _, l := range leases {
		id, err := parseRunID(l.RunID)
		if err != nil {
			return nil, fmt.Errorf("renew leases: %w", err)
		}
		e := m.entries[id]
		if e == nil || !leaseHeld(StatusRunning, e.token, e.owner, e.expires, l) {
			lost = append(lost, l.RunID)
			continue
		}
		e.expires = now.Add(ttl)
		e.due = e.expires
	}
	return lost, nil
}

// held is bolt's held: the run, whole, when l is its current lease. Caller holds m.mu.
func (m *Memory) held(id runID, l Lease) (*Run, error) {
	r := m.load(id, true)
	if r == nil {
		return nil, fmt.Errorf("run %s: %w", l.RunID, ErrNotFound)
	}
	e := m.entries[id]
	if e == nil || !leaseHeld(r.Status, e.token, e.owner, e.expires, l) {
		return nil, fmt.Errorf("run %s (lease %d of %s): %w", l.RunID, l.Token, l.Owner, ErrLeaseLost)
	}
	return r, nil
}

func (m *Memory) Save(ctx context.Context, run *Run, lease Lease) error {
	id, err := parseRunID(run.ID)
	if err != nil {
		return fmt.Errorf("save run: %w", err)
	}
	if err := checkSave(run); err != nil {
		return err
	}
	if lease.RunID != run.ID {
		return fmt.Errorf("save run %s: %w: the lease is for run %s", run.ID, ErrInvalid, lease.RunID)
	}
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	stored, err := m.held(id, lease)
	if err != nil {
		return err
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

func (m *Memory) Release(ctx context.Context, lease Lease) error {
	id, err := parseRunID(lease.RunID)
	if err != nil {
		return fmt.Errorf("release run: %w", err)
	}
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, err := m.held(id, lease); err != nil {
		return err
	}
	e := m.entries[id]
	e.owner, e.expires, e.due = "", time.Time{}, now
	return nil
}

func (m *Memory) Runnable(ctx context.Context) (int, error) {
	if err := m.begin(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	return m.runnable, nil
}
