package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// memQueue is Store's work queue: the rules package store shares (DueAt, ClaimRun,
// LeaseHeld), kept in maps.
// Claims scan the unfinished runs: the memory store is for tests, where they are few.
type memQueue struct {
	entries  map[store.RunID]*memEntryQ // unfinished runs
	serial   map[string][]store.RunID   // serialize_by key -> unfinished runs, ascending
	debounce map[string][]store.RunID   // debounce key -> unfinished runs, ascending
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
	return memQueue{entries: map[store.RunID]*memEntryQ{}, serial: map[string][]store.RunID{}, debounce: map[string][]store.RunID{}}
}

func insertID(ids []store.RunID, id store.RunID) []store.RunID {
	i, found := slices.BinarySearchFunc(ids, id, cmpID)
	if found {
		return ids
	}
	return slices.Insert(ids, i, id)
}

func removeID(ids []store.RunID, id store.RunID) []store.RunID {
	if i, found := slices.BinarySearchFunc(ids, id, cmpID); found {
		return slices.Delete(ids, i, i+1)
	}
	return ids
}

// reschedule files r, whose status was old ("" for a new run), under its due time,
// serialize_by and debounce keys, as the bolt store's reschedule does. Caller holds m.mu.
func (q *memQueue) reschedule(id store.RunID, r *store.Run, old store.Status, lease *store.Lease, now time.Time) {
	if r.Status.Runnable() {
		q.runnable++
	}
	if old != "" && old.Runnable() {
		q.runnable--
	}
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
	case r.Status != store.StatusRunning:
		e.owner, e.expires = "", time.Time{}
	}
	e.due = store.DueAt(r, e.expires, now)
}

func (m *Store) Claim(ctx context.Context, owner string, limit int, ttl time.Duration) (store.ClaimResult, error) {
	if err := store.CheckClaimArgs(owner, ttl); err != nil {
		return store.ClaimResult{}, err
	}
	limit = max(limit, 1)
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return store.ClaimResult{}, err
	}
	defer m.mu.Unlock()
	type due struct {
		id store.RunID
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
	var res store.ClaimResult
	for _, d := range all {
		if len(res.Runs) == limit || d.at.After(now) {
			break
		}
		r := m.load(d.id, true)
		e := m.entries[d.id]
		old := r.Status
		store.ClaimRun(r, now)
		l := store.Lease{RunID: r.ID, Owner: owner, Token: e.token + 1, Expires: now.Add(ttl)}
		m.save(d.id, r)
		m.reschedule(d.id, r, old, &l, now)
		res.Runs = append(res.Runs, store.Claimed{Run: r, Lease: l})
	}
	for _, e := range m.entries {
		if !e.parked && (res.Next.IsZero() || e.due.Before(res.Next)) {
			res.Next = e.due
		}
	}
	return res, nil
}

func (m *Store) Renew(ctx context.Context, leases []store.Lease, ttl time.Duration) ([]string, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("renew leases: %w: ttl %s", store.ErrInvalid, ttl)
	}
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var lost []string
	for _, l := range leases {
		id, err := store.ParseRunID(l.RunID)
		if err != nil {
			return nil, fmt.Errorf("renew leases: %w", err)
		}
		e := m.entries[id]
		if e == nil || !store.LeaseHeld(store.StatusRunning, e.token, e.owner, e.expires, l) {
			lost = append(lost, l.RunID)
			continue
		}
		e.expires = now.Add(ttl)
		e.due = e.expires
	}
	return lost, nil
}

// held is the bolt store's held: the run, whole, when l is its current lease. Caller holds m.mu.
func (m *Store) held(id store.RunID, l store.Lease) (*store.Run, error) {
	r := m.load(id, true)
	if r == nil {
		return nil, fmt.Errorf("run %s: %w", l.RunID, store.ErrNotFound)
	}
	e := m.entries[id]
	if e == nil || !store.LeaseHeld(r.Status, e.token, e.owner, e.expires, l) {
		return nil, store.LeaseLost(l)
	}
	return r, nil
}

func (m *Store) Save(ctx context.Context, run *store.Run, lease store.Lease) error {
	id, err := store.CheckSave(run, lease)
	if err != nil {
		return err
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
	if err := store.ApplyUpdate(stored, &in, now); err != nil {
		return err
	}
	m.save(id, stored)
	m.reschedule(id, stored, old, nil, now)
	store.ReportSaved(run, stored)
	return nil
}

func (m *Store) Cancel(ctx context.Context, id string) (*store.Run, error) {
	rid, err := store.ParseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("cancel run: %w", err)
	}
	now := m.clock.Now()
	if err := m.begin(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	stored := m.load(rid, true)
	if stored == nil {
		return nil, fmt.Errorf("cancel run %s: %w", id, store.ErrNotFound)
	}
	old := stored.Status
	if err := store.RequestCancel(stored, now); err != nil {
		return nil, err
	}
	m.save(rid, stored)
	m.reschedule(rid, stored, old, nil, now)
	out := *stored
	out.State, out.Result, out.Request.Body = nil, nil, nil
	return &out, nil
}

func (m *Store) Release(ctx context.Context, lease store.Lease) error {
	id, err := store.ParseRunID(lease.RunID)
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

func (m *Store) Runnable(ctx context.Context) (int, error) {
	if err := m.begin(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	return m.runnable, nil
}
