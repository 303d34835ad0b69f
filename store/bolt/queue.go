package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// The work queue in the bbolt file (see bolt.go for the layout): queue/ holds one entry per
// unfinished run, idx_due orders the runs that are not parked by due time, idx_serial
// orders the unfinished runs of each serialize_by key by arrival. Every change of a run's
// status goes through reschedule, in the transaction that changes the run, so the three
// never disagree with the runs bucket (Check verifies it).

// queueEntry is a run's place in the queue.
type queueEntry struct {
	due     time.Time
	token   uint64    // fencing token: how many times the run was claimed
	expires time.Time // of the lease; zero when nobody holds the run
	owner   string
	parked  bool // behind an earlier unfinished run with its serialize_by key: not in idx_due
}

const entryParked = 1

func (e *queueEntry) encode() []byte {
	b := make([]byte, 0, 25+len(e.owner))
	b = binary.BigEndian.AppendUint64(b, dueNanos(e.due))
	b = binary.BigEndian.AppendUint64(b, e.token)
	b = binary.BigEndian.AppendUint64(b, uint64(store.TimeNanos(e.expires)))
	var flags byte
	if e.parked {
		flags |= entryParked
	}
	b = append(b, flags)
	return append(b, e.owner...)
}

func decodeEntry(v []byte) (queueEntry, error) {
	if len(v) < 25 {
		return queueEntry{}, fmt.Errorf("%w: queue entry of %d bytes", store.ErrCorrupt, len(v))
	}
	return queueEntry{
		due:     store.NanosTime(int64(binary.BigEndian.Uint64(v))),
		token:   binary.BigEndian.Uint64(v[8:]),
		expires: store.NanosTime(int64(binary.BigEndian.Uint64(v[16:]))),
		parked:  v[24]&entryParked != 0,
		owner:   string(v[25:]),
	}, nil
}

// dueNanos is a due time as the big-endian prefix of idx_due keys: times before 1970 sort
// first, as 0.
func dueNanos(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

func dueKey(due time.Time, id store.RunID) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 24), dueNanos(due))
	return append(k, id[:]...)
}

func serialPrefix(key string) []byte { return debouncePrefix(key) }

func getEntry(tx *bbolt.Tx, id store.RunID) (queueEntry, bool, error) {
	v := tx.Bucket(bucketQueue).Get(id[:])
	if v == nil {
		return queueEntry{}, false, nil
	}
	e, err := decodeEntry(v)
	if err != nil {
		return e, false, fmt.Errorf("run %s: %w", id, err)
	}
	return e, true, nil
}

// putEntry stores e for id, moving its idx_due entry from where old had it.
func putEntry(tx *bbolt.Tx, id store.RunID, old *queueEntry, e queueEntry) error {
	due := tx.Bucket(bucketIdxDue)
	if old != nil && !old.parked {
		if err := due.Delete(dueKey(old.due, id)); err != nil {
			return err
		}
	}
	if !e.parked {
		if err := due.Put(dueKey(e.due, id), empty); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketQueue).Put(id[:], e.encode())
}

// reschedule keeps the queue in step with run r (id), whose stored status was old ("" for a
// run just created), now that it is r.Status. lease, when set, is the lease r is held under
// from now on (a claim, a renewal, a run created claimed); otherwise a running run keeps the
// lease it had and any other status drops it.
func reschedule(tx *bbolt.Tx, id store.RunID, r *store.Run, old store.Status, lease *store.Lease, now time.Time) error {
	prev, had, err := getEntry(tx, id)
	if err != nil {
		return err
	}
	if d := boolInt(r.Status.Runnable()) - boolInt(old != "" && old.Runnable()); d != 0 {
		if err := addMetaCount(tx, metaRunnable, d); err != nil {
			return err
		}
	}
	if r.Status.Final() {
		if !had {
			return nil
		}
		if !prev.parked {
			if err := tx.Bucket(bucketIdxDue).Delete(dueKey(prev.due, id)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketQueue).Delete(id[:]); err != nil {
			return err
		}
		return leaveSerial(tx, r.SerializeKey, id, now)
	}
	e := prev
	if !had {
		e = queueEntry{}
		if r.SerializeKey != "" {
			head, err := joinSerial(tx, r.SerializeKey, id)
			if err != nil {
				return err
			}
			e.parked = !head
		}
	}
	switch {
	case lease != nil:
		e.token, e.owner, e.expires = lease.Token, lease.Owner, lease.Expires
	case r.Status != store.StatusRunning:
		e.owner, e.expires = "", time.Time{}
	}
	e.due = store.DueAt(r, e.expires, now)
	var prevp *queueEntry
	if had {
		prevp = &prev
	}
	return putEntry(tx, id, prevp, e)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// joinSerial files id under its serialize_by key and reports whether it is the key's
// earliest unfinished run (its head), which alone may be due.
func joinSerial(tx *bbolt.Tx, key string, id store.RunID) (bool, error) {
	prefix := serialPrefix(key)
	b := tx.Bucket(bucketIdxSerial)
	if err := b.Put(append(append([]byte(nil), prefix...), id[:]...), empty); err != nil {
		return false, err
	}
	k, _ := b.Cursor().Seek(prefix)
	return bytes.Equal(k[len(prefix):], id[:]), nil
}

// leaveSerial takes final run id out of its serialize_by key and makes the key's next run
// due, if it was parked.
func leaveSerial(tx *bbolt.Tx, key string, id store.RunID, now time.Time) error {
	if key == "" {
		return nil
	}
	prefix := serialPrefix(key)
	b := tx.Bucket(bucketIdxSerial)
	if err := b.Delete(append(append([]byte(nil), prefix...), id[:]...)); err != nil {
		return err
	}
	k, _ := b.Cursor().Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+16 {
		return nil
	}
	next := store.RunID(k[len(prefix):])
	e, ok, err := getEntry(tx, next)
	if err != nil || !ok || !e.parked {
		return err
	}
	prev := e
	e.parked = false
	return putEntry(tx, next, &prev, e)
}

func addMetaCount(tx *bbolt.Tx, key []byte, delta int) error {
	meta := tx.Bucket(bucketMeta)
	n := int64(u64(meta.Get(key))) + int64(delta)
	if n < 0 {
		n = 0
	}
	return meta.Put(key, be64(uint64(n)))
}

func (b *Store) Runnable(ctx context.Context) (int, error) {
	var n int
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		n = int(u64(tx.Bucket(bucketMeta).Get(metaRunnable)))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("runnable runs: %w", err)
	}
	return n, nil
}

// dueRuns lists up to limit ids due at now, earliest first, and the due time of the first run
// after them (zero when there is none).
func dueRuns(tx *bbolt.Tx, now time.Time, limit int) ([]store.RunID, time.Time) {
	var ids []store.RunID
	c := tx.Bucket(bucketIdxDue).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 24 {
			continue
		}
		due := store.NanosTime(int64(binary.BigEndian.Uint64(k)))
		if len(ids) == limit || due.After(now) {
			return ids, due
		}
		ids = append(ids, store.RunID(k[8:]))
	}
	return ids, time.Time{}
}

func (b *Store) Claim(ctx context.Context, owner string, limit int, ttl time.Duration) (store.ClaimResult, error) {
	if err := store.CheckClaimArgs(owner, ttl); err != nil {
		return store.ClaimResult{}, err
	}
	limit = max(limit, 1)
	now := b.clock.Now()
	// A read first: most claims (a timer firing for a lease that was renewed, a worker
	// freed while nothing waits) find nothing due, and then cost no commit.
	var res store.ClaimResult
	var ids []store.RunID
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		ids, res.Next = dueRuns(tx, now, limit)
		return nil
	})
	if err != nil || len(ids) == 0 {
		if err != nil {
			err = fmt.Errorf("claim runs: %w", err)
		}
		return res, err
	}
	err = b.write(ctx, func(tx *bbolt.Tx) error {
		res = store.ClaimResult{} // fn may run twice (batch redone solo)
		// Again inside the write: another claim may have taken some meanwhile.
		ids, _ := dueRuns(tx, now, limit)
		for _, id := range ids {
			c, err := claimOne(tx, id, owner, now, ttl)
			if err != nil {
				return err
			}
			res.Runs = append(res.Runs, c)
		}
		_, res.Next = dueRuns(tx, now, 0)
		return nil
	})
	if err != nil {
		return store.ClaimResult{}, fmt.Errorf("claim runs: %w", err)
	}
	return res, nil
}

// claimOne leases due run id to owner.
func claimOne(tx *bbolt.Tx, id store.RunID, owner string, now time.Time, ttl time.Duration) (store.Claimed, error) {
	r, err := loadRun(tx, id, true)
	if err != nil {
		return store.Claimed{}, err
	}
	e, ok, err := getEntry(tx, id)
	if err != nil {
		return store.Claimed{}, err
	}
	if r == nil || !ok || r.Status.Final() {
		return store.Claimed{}, fmt.Errorf("%w: due run %s is not an unfinished run", store.ErrCorrupt, id)
	}
	old := r.Status
	store.ClaimRun(r, now)
	l := store.Lease{RunID: r.ID, Owner: owner, Token: e.token + 1, Expires: now.Add(ttl)}
	if err := tx.Bucket(bucketRuns).Put(id[:], store.EncodeRun(nil, r, nil)); err != nil {
		return store.Claimed{}, err
	}
	if err := moveStatus(tx, id, old, r); err != nil {
		return store.Claimed{}, err
	}
	if err := reschedule(tx, id, r, old, &l, now); err != nil {
		return store.Claimed{}, err
	}
	return store.Claimed{Run: r, Lease: l}, nil
}

func (b *Store) Renew(ctx context.Context, leases []store.Lease, ttl time.Duration) ([]string, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("renew leases: %w: ttl %s", store.ErrInvalid, ttl)
	}
	ids := make([]store.RunID, len(leases))
	for i, l := range leases {
		id, err := store.ParseRunID(l.RunID)
		if err != nil {
			return nil, fmt.Errorf("renew leases: %w", err)
		}
		ids[i] = id
	}
	now := b.clock.Now()
	var lost []string
	err := b.write(ctx, func(tx *bbolt.Tx) error {
		lost = nil
		for i, l := range leases {
			e, ok, err := getEntry(tx, ids[i])
			if err != nil {
				return err
			}
			status := store.StatusRunning
			if !ok || !store.LeaseHeld(status, e.token, e.owner, e.expires, l) {
				lost = append(lost, l.RunID)
				continue
			}
			prev := e
			e.expires = now.Add(ttl)
			e.due = e.expires
			if err := putEntry(tx, ids[i], &prev, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return lost, nil
}

// held loads run id for a write fenced by l: ErrLeaseLost unless l is its current lease.
func held(tx *bbolt.Tx, id store.RunID, l store.Lease) (*store.Run, error) {
	r, err := loadRun(tx, id, false)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("run %s: %w", l.RunID, store.ErrNotFound)
	}
	e, ok, err := getEntry(tx, id)
	if err != nil {
		return nil, err
	}
	if !ok || !store.LeaseHeld(r.Status, e.token, e.owner, e.expires, l) {
		return nil, store.LeaseLost(l)
	}
	return r, nil
}

func (b *Store) Save(ctx context.Context, run *store.Run, lease store.Lease) error {
	id, err := store.CheckSave(run, lease)
	if err != nil {
		return err
	}
	now := b.clock.Now()
	in := *run
	var result error
	var stored *store.Run
	err = b.write(ctx, func(tx *bbolt.Tx) error {
		result = nil
		var err error
		if stored, err = held(tx, id, lease); err != nil {
			result = err
			return nil
		}
		result, err = updateRun(tx, id, stored, &in, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("save run %s: %w", run.ID, err)
	}
	if result != nil {
		return result
	}
	store.ReportSaved(run, stored)
	return nil
}

func (b *Store) Release(ctx context.Context, lease store.Lease) error {
	id, err := store.ParseRunID(lease.RunID)
	if err != nil {
		return fmt.Errorf("release run: %w", err)
	}
	now := b.clock.Now()
	var result error
	err = b.write(ctx, func(tx *bbolt.Tx) error {
		result = nil
		if _, err := held(tx, id, lease); err != nil {
			result = err
			return nil
		}
		e, _, err := getEntry(tx, id)
		if err != nil {
			return err
		}
		prev := e
		e.owner, e.expires, e.due = "", time.Time{}, now
		return putEntry(tx, id, &prev, e)
	})
	if err != nil {
		return fmt.Errorf("release run %s: %w", lease.RunID, err)
	}
	return result
}

// releaseOrphans makes every lease in the file due at once. Open calls it: the file
// lock says no other process uses the file, so any lease in it belongs to a process that
// died (kill -9, power loss), and its runs need not wait out their lease to resume. A
// file that cannot be written is left as it is.
func releaseOrphans(db *bbolt.DB, now time.Time) error {
	var orphans []store.RunID
	_ = db.View(func(tx *bbolt.Tx) error {
		q := tx.Bucket(bucketQueue)
		if q == nil {
			return nil
		}
		return q.ForEach(func(k, v []byte) error {
			if e, err := decodeEntry(v); err == nil && !e.expires.IsZero() && len(k) == 16 {
				orphans = append(orphans, store.RunID(k))
			}
			return nil
		})
	})
	if len(orphans) == 0 {
		return nil
	}
	return db.Update(func(tx *bbolt.Tx) error {
		for _, id := range orphans {
			e, ok, err := getEntry(tx, id)
			if err != nil || !ok {
				return err
			}
			prev := e
			e.owner, e.expires = "", time.Time{}
			if !e.due.Before(now) {
				e.due = now
			}
			if err := putEntry(tx, id, &prev, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkQueue cross-checks the queue buckets with the runs; see Check.
func checkQueue(tx *bbolt.Tx, bad func(string, ...any)) {
	unfinished := map[store.RunID]*store.Run{}
	runnableRuns := 0
	_ = tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		var r store.Run
		if len(k) != 16 {
			return nil
		}
		if _, err := store.DecodeRun(v, &r, false); err != nil {
			return nil // checkIndexes reports it
		}
		if !r.Status.Final() {
			unfinished[store.RunID(k)] = &r
		}
		if r.Status.Runnable() {
			runnableRuns++
		}
		return nil
	})
	if c := u64(tx.Bucket(bucketMeta).Get(metaRunnable)); c != uint64(runnableRuns) {
		bad("meta: runnable count %d, runs hold %d queued or waiting", c, runnableRuns)
	}
	entries := map[store.RunID]queueEntry{}
	_ = tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
		if len(k) != 16 {
			bad("queue: key %x is not an id", k)
			return nil
		}
		e, err := decodeEntry(v)
		if err != nil {
			bad("queue: %v", err)
			return nil
		}
		id := store.RunID(k)
		r := unfinished[id]
		switch {
		case r == nil:
			bad("queue: entry for run %s, which is not an unfinished run", id)
		case !e.expires.IsZero() && r.Status != store.StatusRunning:
			bad("queue: run %s is %s but leased", id, r.Status)
		}
		entries[id] = e
		return nil
	})
	for id := range unfinished {
		if _, ok := entries[id]; !ok {
			bad("queue: unfinished run %s has no entry", id)
		}
	}
	seen := 0
	_ = tx.Bucket(bucketIdxDue).ForEach(func(k, _ []byte) error {
		seen++
		if len(k) != 24 {
			bad("idx_due: malformed key %x", k)
			return nil
		}
		id := store.RunID(k[8:])
		e, ok := entries[id]
		if !ok || e.parked || !bytes.Equal(k, dueKey(e.due, id)) {
			bad("idx_due: entry %x matches no due run", k)
		}
		return nil
	})
	due := 0
	for _, e := range entries {
		if !e.parked {
			due++
		}
	}
	if seen != due {
		bad("idx_due: %d entries, the queue has %d runs that are not parked", seen, due)
	}
	heads := map[string]bool{}
	seen = 0
	_ = tx.Bucket(bucketIdxSerial).ForEach(func(k, _ []byte) error {
		seen++
		if len(k) < 16 {
			bad("idx_serial: malformed key %x", k)
			return nil
		}
		id := store.RunID(k[len(k)-16:])
		r := unfinished[id]
		if r == nil || r.SerializeKey == "" || !bytes.Equal(k, append(serialPrefix(r.SerializeKey), id[:]...)) {
			bad("idx_serial: entry %x matches no unfinished run", k)
			return nil
		}
		if !heads[r.SerializeKey] {
			heads[r.SerializeKey] = true
			if entries[id].parked {
				bad("idx_serial: run %s heads its serialize_by key but is parked", id)
			}
		}
		return nil
	})
	want := 0
	for _, r := range unfinished {
		if r.SerializeKey != "" {
			want++
		}
	}
	if seen != want {
		bad("idx_serial: %d entries, %d unfinished runs have a serialize_by key", seen, want)
	}
}

func (b *Store) Cancel(ctx context.Context, id string) (*store.Run, error) {
	rid, err := store.ParseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("cancel run: %w", err)
	}
	now := b.clock.Now()
	var result error
	var stored store.Run
	err = b.write(ctx, func(tx *bbolt.Tx) error {
		result = nil
		runs := tx.Bucket(bucketRuns)
		v := runs.Get(rid[:])
		if v == nil {
			result = fmt.Errorf("cancel run %s: %w", id, store.ErrNotFound)
			return nil
		}
		stored = store.Run{ID: rid.String()}
		// Whole: the checkpoint must survive the rewrite (the body lives apart).
		if _, err := store.DecodeRun(v, &stored, true); err != nil {
			return fmt.Errorf("run %s: %w", id, err)
		}
		old := stored.Status
		if result = store.RequestCancel(&stored, now); result != nil {
			return nil
		}
		if err := runs.Put(rid[:], store.EncodeRun(nil, &stored, nil)); err != nil {
			return err
		}
		if err := moveStatus(tx, rid, old, &stored); err != nil {
			return err
		}
		return reschedule(tx, rid, &stored, old, nil, now)
	})
	if err != nil {
		return nil, fmt.Errorf("cancel run %s: %w", id, err)
	}
	if result != nil {
		return nil, result
	}
	stored.State, stored.Result = nil, nil
	return &stored, nil
}
