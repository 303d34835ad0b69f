package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

func (b *Store) Create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error) {
	now := b.clock.Now()
	r, id, err := store.PrepareCreate(run, now, &b.ids)
	if err != nil {
		return store.CreateResult{}, err
	}
	claims := store.KeyClaims(&r, opts, now)
	// Encoded before queueing, so the shared transaction holds the lock only for bbolt work.
	// A run that may be created claimed is encoded claimed, as nearly all are; the
	// transaction encodes it unclaimed in the rare case it cannot be (its serialize_by key
	// is busy).
	var claimed store.Run
	var rec, claimedRec []byte
	if opts.Owner != "" {
		if err := store.CheckClaimArgs(opts.Owner, opts.LeaseTTL); err != nil {
			return store.CreateResult{}, err
		}
		if r.Status == store.StatusQueued {
			claimed = r
			store.ClaimRun(&claimed, now)
			claimedRec = store.EncodeRun(nil, &claimed, nil)
		}
	}
	if claimedRec == nil {
		rec = store.EncodeRun(nil, &r, nil)
	}
	var res store.CreateResult
	var exists bool
	var full error
	err = b.write(ctx, func(tx *bbolt.Tx) error {
		res, exists, full = store.CreateResult{}, false, nil // fn may run twice (batch redone solo)
		runs := tx.Bucket(bucketRuns)
		if runs.Get(id[:]) != nil {
			exists = true
			return nil
		}
		// Every key is checked before any is claimed: a duplicate by one key must not
		// leave the other claimed for a run that was never stored.
		for _, c := range claims {
			if holder := claimHolder(tx, c.Key, now); holder != "" {
				res.DuplicateOf = holder
				return nil
			}
		}
		// A run is claimed at its creation only when it would be due at once anyway: no
		// earlier run with its serialize_by key is unfinished.
		take := claimedRec != nil && !serialBusy(tx, r.SerializeKey)
		// Full refuses a run a worker would take too: it may suspend into a retry wait, and
		// the waiting runs must stay bounded (by MaxRunnable plus the executing runs).
		if r.Status.Runnable() && opts.MaxRunnable > 0 &&
			u64(tx.Bucket(bucketMeta).Get(metaRunnable)) >= uint64(opts.MaxRunnable) {
			full = fmt.Errorf("create run: %w: %d runs are queued or waiting", store.ErrFull, opts.MaxRunnable)
			return nil
		}
		for _, c := range claims {
			if err := claimKey(tx, c.Key, id, c.Expires); err != nil {
				return err
			}
		}
		if r.DebounceKey != "" && !r.Status.Final() {
			sup, err := supersedePending(tx, r.DebounceKey, r.ID, now)
			if err != nil {
				return err
			}
			res.Superseded = sup
		}
		stored, rec := &r, rec
		var lease *store.Lease
		if take {
			stored, rec = &claimed, claimedRec
			lease = &store.Lease{RunID: r.ID, Owner: opts.Owner, Token: 1, Expires: now.Add(opts.LeaseTTL)}
			res.Lease = lease
		} else if rec == nil {
			rec = store.EncodeRun(nil, &r, nil)
		}
		if err := runs.Put(id[:], rec); err != nil {
			return err
		}
		if len(r.Request.Body) > 0 {
			if err := tx.Bucket(bucketBodies).Put(id[:], r.Request.Body); err != nil {
				return err
			}
		}
		if err := putIndexes(tx, id, stored); err != nil {
			return err
		}
		if !stored.Status.Final() {
			if err := reschedule(tx, id, stored, "", lease, now); err != nil {
				return err
			}
		}
		return addRunCount(tx, 1)
	})
	if err != nil {
		return store.CreateResult{}, fmt.Errorf("create run: %w", err)
	}
	if exists {
		return store.CreateResult{}, fmt.Errorf("create run: %w: run %s already exists", store.ErrInvalid, r.ID)
	}
	if full != nil {
		return store.CreateResult{}, full
	}
	if res.DuplicateOf == "" {
		if res.Lease != nil {
			r = claimed
		}
		*run = r
	}
	return res, nil
}

// serialBusy reports whether serialize_by key has an unfinished run.
func serialBusy(tx *bbolt.Tx, key string) bool {
	if key == "" {
		return false
	}
	prefix := serialPrefix(key)
	k, _ := tx.Bucket(bucketIdxSerial).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// claimHolder returns the id of the run holding key, or "" when nobody holds it or the
// claim has expired.
func claimHolder(tx *bbolt.Tx, key string, now time.Time) string {
	if v := tx.Bucket(bucketIdem).Get(boundedKey(key)); len(v) == 24 && now.UnixNano() < int64(u64(v[16:])) {
		return store.RunID(v[:16]).String()
	}
	return ""
}

// claimKey makes id the holder of key until expires, replacing an expired claim.
func claimKey(tx *bbolt.Tx, key string, id store.RunID, expires time.Time) error {
	idem, idemExp := tx.Bucket(bucketIdem), tx.Bucket(bucketIdemExp)
	k := boundedKey(key)
	if v := idem.Get(k); len(v) == 24 {
		if err := idemExp.Delete(append(append([]byte(nil), v[16:]...), k...)); err != nil {
			return err
		}
	}
	ns := be64(uint64(expires.UnixNano()))
	if err := idem.Put(k, append(append([]byte(nil), id[:]...), ns...)); err != nil {
		return err
	}
	return idemExp.Put(append(ns, k...), empty)
}

// supersedePending marks every run with the debounce key that has not started yet
// (store.Supersedable) superseded. Others keep their index entry until they finish.
func supersedePending(tx *bbolt.Tx, key, by string, now time.Time) ([]string, error) {
	prefix := debouncePrefix(key)
	var ids []store.RunID
	c := tx.Bucket(bucketIdxDebounce).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) == len(prefix)+16 {
			ids = append(ids, store.RunID(k[len(prefix):]))
		}
	}
	var out []string
	runs := tx.Bucket(bucketRuns)
	for _, id := range ids {
		v := runs.Get(id[:])
		if v == nil {
			continue
		}
		var o store.Run
		if _, err := store.DecodeRun(v, &o, true); err != nil {
			return nil, fmt.Errorf("run %s: %w", id, err)
		}
		if !store.Supersedable(&o) {
			continue
		}
		old := o.Status
		store.Supersede(&o, by, now)
		if err := runs.Put(id[:], store.EncodeRun(nil, &o, nil)); err != nil {
			return nil, err
		}
		if err := moveStatus(tx, id, old, &o); err != nil {
			return nil, err
		}
		if err := reschedule(tx, id, &o, old, nil, now); err != nil {
			return nil, err
		}
		out = append(out, id.String())
	}
	return out, nil
}

func addRunCount(tx *bbolt.Tx, delta int) error {
	meta := tx.Bucket(bucketMeta)
	n := int64(u64(meta.Get(metaRuns))) + int64(delta)
	if n < 0 {
		n = 0
	}
	return meta.Put(metaRuns, be64(uint64(n)))
}

func (b *Store) Update(ctx context.Context, run *store.Run) error {
	id, err := store.ParseRunID(run.ID)
	if err != nil {
		return fmt.Errorf("update run: %w", err)
	}
	now := b.clock.Now()
	in := *run
	var result error
	var stored store.Run
	err = b.write(ctx, func(tx *bbolt.Tx) error {
		result = nil
		runs := tx.Bucket(bucketRuns)
		v := runs.Get(id[:])
		if v == nil {
			result = fmt.Errorf("update run %s: %w", run.ID, store.ErrNotFound)
			return nil
		}
		stored = store.Run{ID: run.ID}
		if _, err := store.DecodeRun(v, &stored, false); err != nil {
			return fmt.Errorf("run %s: %w", run.ID, err)
		}
		var err error
		result, err = updateRun(tx, id, &stored, &in, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("update run %s: %w", run.ID, err)
	}
	if result != nil {
		return result
	}
	run.Status, run.UpdatedAt, run.FinishedAt = stored.Status, stored.UpdatedAt, stored.FinishedAt
	return nil
}

// updateRun applies the mutable fields of in to stored (read from the file, its light part
// suffices: the update replaces the heavy one) and writes it with its indexes and queue
// entry. refused is a caller's error (ErrFinal), err a failed write.
func updateRun(tx *bbolt.Tx, id store.RunID, stored *store.Run, in *store.Run, now time.Time) (refused, err error) {
	old := stored.Status
	upd := *in
	if err := store.ApplyUpdate(stored, &upd, now); err != nil {
		return err, nil
	}
	if err := tx.Bucket(bucketRuns).Put(id[:], store.EncodeRun(nil, stored, nil)); err != nil {
		return nil, err
	}
	if err := moveStatus(tx, id, old, stored); err != nil {
		return nil, err
	}
	return nil, reschedule(tx, id, stored, old, nil, now)
}

func (b *Store) GetRun(ctx context.Context, id string) (*store.Run, error) {
	rid, err := store.ParseRunID(id)
	if err != nil {
		return nil, fmt.Errorf("get run: %w", err)
	}
	var r *store.Run
	err = b.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		r, err = loadRun(tx, rid, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	if r == nil {
		return nil, fmt.Errorf("get run %s: %w", id, store.ErrNotFound)
	}
	return r, nil
}

// loadRun reads run id; nil when absent. full adds State, Result and the body.
func loadRun(tx *bbolt.Tx, id store.RunID, full bool) (*store.Run, error) {
	v := tx.Bucket(bucketRuns).Get(id[:])
	if v == nil {
		return nil, nil
	}
	r := &store.Run{ID: id.String()}
	if _, err := store.DecodeRun(v, r, full); err != nil {
		return nil, fmt.Errorf("run %s: %w", r.ID, err)
	}
	if full {
		if body := tx.Bucket(bucketBodies).Get(id[:]); len(body) > 0 {
			r.Request.Body = append([]byte(nil), body...)
		}
	}
	return r, nil
}

func (b *Store) List(ctx context.Context, f store.Filter) ([]*store.Run, string, error) {
	q, err := store.NewListQuery(f)
	if err != nil {
		return nil, "", fmt.Errorf("list runs: %w", err)
	}
	if b.listScan > 0 {
		q.Scan = b.listScan
	}
	var out []*store.Run
	next := ""
	err = b.view(ctx, func(tx *bbolt.Tx) error {
		m := listPlan(tx, &q)
		// Filters no index answers are checked on each run read; q.Scan bounds the reads, and
		// a page cut short by it resumes after the last run read.
		var last store.RunID
		for read := 0; ; read++ {
			if read == q.Scan {
				next = store.EncodeCursor(last)
				return nil
			}
			id, ok := m.next()
			if !ok {
				return nil
			}
			r, err := loadRun(tx, id, false)
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("%w: index entry for missing run %s", store.ErrCorrupt, id)
			}
			last = id
			if !q.Matches(r) {
				continue
			}
			if len(out) == q.Limit {
				// One more matches: there is a next page, after the last run returned.
				lid, _ := store.ParseRunID(out[len(out)-1].ID)
				next = store.EncodeCursor(lid)
				return nil
			}
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, "", fmt.Errorf("list runs: %w", err)
	}
	return out, next, nil
}

// listPlan picks the index that holds the fewest runs beyond the matching ones: exactly
// them for partner, site, endpoint and status (idx_status_scope, its streams merged over
// the statuses or scopes left open); an idempotency key's few runs when one is asked for. Saga and replay_of are checked on the runs read.
func listPlan(tx *bbolt.Tx, q *store.ListQuery) *merger {
	f := &q.Filter
	scoped := f.Partner != "" || f.Site != "" || f.Endpoint != ""
	parts := []string{f.Partner, f.Site, f.Endpoint}
	var bucket *bbolt.Bucket
	var prefixes [][]byte
	switch {
	case f.IdempotencyKey != "" && tx.Bucket(bucketIdxIdem) != nil:
		// Few runs share a key: read them all and let Matches apply the other filters.
		bucket, prefixes = tx.Bucket(bucketIdxIdem), [][]byte{debouncePrefix(f.IdempotencyKey)}
	case !scoped && f.Status == "":
		bucket, prefixes = tx.Bucket(bucketRuns), [][]byte{nil}
	default:
		// Status is the first part of an idx_status_scope key: a wildcard there merges the
		// statuses present, as a wildcard partner merges the partners.
		bucket = tx.Bucket(bucketIdxStatusScope)
		prefixes = scopePrefixes(bucket, nil, append([]string{string(f.Status)}, parts...))
	}
	streams := make([]*stream, len(prefixes))
	for i, p := range prefixes {
		streams[i] = newStream(bucket, p, q)
	}
	return newMerger(streams, q.Desc)
}

func (b *Store) Unfinished(ctx context.Context) ([]*store.Run, error) {
	var out []*store.Run
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		m := statusMerger(tx, []store.Status{store.StatusQueued, store.StatusRunning, store.StatusWaiting}, nil)
		for {
			id, ok := m.next()
			if !ok {
				return nil
			}
			r, err := loadRun(tx, id, true)
			if err != nil {
				return err
			}
			if r == nil {
				return fmt.Errorf("%w: status index entry for missing run %s", store.ErrCorrupt, id)
			}
			out = append(out, r)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("unfinished runs: %w", err)
	}
	return out, nil
}

// statusMerger walks the runs with any of the statuses, oldest first, below hi (nil: all).
// A status's runs are one stream per scope (partner, site, endpoint) it has: idx_status_scope
// serves status alone too, so a create writes one status entry, not two.
func statusMerger(tx *bbolt.Tx, sts []store.Status, hi *store.RunID) *merger {
	q := store.ListQuery{Hi: hi}
	bucket := tx.Bucket(bucketIdxStatusScope)
	var streams []*stream
	for _, st := range sts {
		for _, p := range scopePrefixes(bucket, join(nil, string(st)), []string{"", "", ""}) {
			streams = append(streams, newStream(bucket, p, &q))
		}
	}
	return newMerger(streams, false)
}

// finalStatuses are the statuses Prune may delete: derived, so a new final status is
// pruned without a second list to update.
var finalStatuses = store.FinalStatuses()

// pruneChunk bounds the deletes per transaction: a chunk shares its commit with the
// accepts queued behind it, so it must stay small. The bench measured accept p99 at 3.2×
// while pruning with chunks of 1000, 1.7-2.1× with 250, and 2.07× with 100 when the
// writer was left to accepts only as long as a chunk took (pruneYield).
const pruneChunk = 100

// pruneYield is how long pruning leaves the writer to accepts after each chunk, as a
// multiple of the chunk's time from queueing to commit: pruning gets at most a third of
// the writer, and less when accepts make its commits wait.
const pruneYield = 2

func (b *Store) Prune(ctx context.Context, before time.Time, maxRuns int) (int, error) {
	var hi *store.RunID
	if !before.IsZero() {
		id := store.FirstIDAt(before)
		hi = &id
	}
	total := 0
	for {
		var deleted int
		var more bool
		now := b.clock.Now()
		began := time.Now()
		err := b.write(ctx, func(tx *bbolt.Tx) error {
			var err error
			deleted, more, err = pruneOnce(tx, hi, maxRuns, now, pruneChunk)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		total += deleted
		if !more {
			return total, nil
		}
		// Leave the writer to accepts for a while: pruning is background work and may take
		// three times as long; an accept may not.
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pruneYield * time.Since(began)):
		}
	}
}

// pruneOnce deletes up to limit runs and expired keys and reports whether work remains.
func pruneOnce(tx *bbolt.Tx, hi *store.RunID, maxRuns int, now time.Time, limit int) (int, bool, error) {
	var victims []store.RunID
	if hi != nil {
		m := statusMerger(tx, finalStatuses, hi)
		for len(victims) < limit {
			id, ok := m.next()
			if !ok {
				break
			}
			victims = append(victims, id)
		}
	}
	if maxRuns > 0 && len(victims) < limit {
		excess := int(u64(tx.Bucket(bucketMeta).Get(metaRuns))) - len(victims) - maxRuns
		if excess > 0 {
			// Oldest final runs overall; those already picked are below hi and come first.
			m := statusMerger(tx, finalStatuses, nil)
			seen := len(victims)
			for skip := 0; excess > 0 && len(victims) < limit; {
				id, ok := m.next()
				if !ok {
					break
				}
				if skip < seen && hi != nil && bytes.Compare(id[:], hi[:]) < 0 {
					skip++
					continue
				}
				victims = append(victims, id)
				excess--
			}
		}
	}
	for _, id := range victims {
		if err := deleteRun(tx, id); err != nil {
			return 0, false, err
		}
	}
	left := limit - len(victims)
	swept, err := sweepExpired(tx, bucketIdemExp, bucketIdem, now, left, true)
	if err != nil {
		return 0, false, err
	}
	left -= swept
	kvSwept, err := sweepExpired(tx, bucketKVExp, bucketKV, now, left, false)
	if err != nil {
		return 0, false, err
	}
	more := len(victims)+swept+kvSwept >= limit
	return len(victims), more, nil
}

func deleteRun(tx *bbolt.Tx, id store.RunID) error {
	r, err := loadRun(tx, id, false)
	if err != nil || r == nil {
		return err
	}
	dels := []struct{ bucket, key []byte }{
		{bucketRuns, id[:]},
		{bucketBodies, id[:]},
		{bucketIdxStatusScope, statusScopeKey(r.Status, r, id)},
	}
	if r.DebounceKey != "" {
		dels = append(dels, struct{ bucket, key []byte }{bucketIdxDebounce, append(debouncePrefix(r.DebounceKey), id[:]...)})
	}
	if r.IdempotencyKey != "" && tx.Bucket(bucketIdxIdem) != nil {
		dels = append(dels, struct{ bucket, key []byte }{bucketIdxIdem, idemIndexKey(r.IdempotencyKey, id)})
	}
	for _, d := range dels {
		if err := tx.Bucket(d.bucket).Delete(d.key); err != nil {
			return err
		}
	}
	for _, key := range [...]string{r.IdempotencyKey, r.MessageKey} {
		if err := releaseClaim(tx, key, id); err != nil {
			return err
		}
	}
	return addRunCount(tx, -1)
}

// releaseClaim drops key when run id holds it. The key goes with its run, so it never
// points at a run that is gone; a later run may have taken the key over after it expired,
// hence the owner check.
func releaseClaim(tx *bbolt.Tx, key string, id store.RunID) error {
	if key == "" {
		return nil
	}
	k := boundedKey(key)
	idem := tx.Bucket(bucketIdem)
	v := idem.Get(k)
	if len(v) != 24 || store.RunID(v[:16]) != id {
		return nil
	}
	if err := tx.Bucket(bucketIdemExp).Delete(append(append([]byte(nil), v[16:]...), k...)); err != nil {
		return err
	}
	return idem.Delete(k)
}

// sweepExpired deletes up to limit entries whose expiry (the first 8 bytes of the key in
// exp) is not after now, with their entries in data. For idem the data entry is deleted
// only when it still carries that expiry (a later claim replaced it otherwise).
func sweepExpired(tx *bbolt.Tx, exp, data []byte, now time.Time, limit int, checkOwner bool) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var keys [][]byte
	c := tx.Bucket(exp).Cursor()
	for k, _ := c.First(); k != nil && len(keys) < limit; k, _ = c.Next() {
		if len(k) < 8 || int64(u64(k[:8])) > now.UnixNano() {
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}
	eb, db := tx.Bucket(exp), tx.Bucket(data)
	for _, k := range keys {
		if err := eb.Delete(k); err != nil {
			return 0, err
		}
		dk := k[8:]
		v := db.Get(dk)
		if checkOwner && (len(v) != 24 || !bytes.Equal(v[16:], k[:8])) {
			continue
		}
		if !checkOwner && (len(v) < 8 || !bytes.Equal(v[:8], k[:8])) {
			continue
		}
		if err := db.Delete(dk); err != nil {
			return 0, err
		}
		if !checkOwner { // a kv entry: its namespace holds one fewer
			ns, _ := kvNamespace(dk)
			if err := addKVCount(tx, ns, -1); err != nil {
				return 0, err
			}
		}
	}
	return len(keys), nil
}

// checkIndexes cross-checks runs and indexes; see Check.
func checkIndexes(tx *bbolt.Tx) []error {
	var errs []error
	bad := func(format string, args ...any) {
		if len(errs) < 50 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	want := map[string]map[string]bool{} // bucket -> keys the runs imply
	for _, b := range [][]byte{bucketIdxStatusScope, bucketIdxDebounce, bucketIdem, bucketIdxIdem} {
		want[string(b)] = map[string]bool{}
	}
	n := 0
	err := tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		n++
		if len(k) != 16 {
			bad("runs: key %x is not an id", k)
			return nil
		}
		id := store.RunID(k)
		var r store.Run
		if _, err := store.DecodeRun(v, &r, true); err != nil {
			bad("run %s: %v", id, err)
			return nil
		}
		want[string(bucketIdxStatusScope)][string(statusScopeKey(r.Status, &r, id))] = true
		if r.IdempotencyKey != "" {
			want[string(bucketIdxIdem)][string(idemIndexKey(r.IdempotencyKey, id))] = true
		}
		if r.DebounceKey != "" && !r.Status.Final() {
			want[string(bucketIdxDebounce)][string(append(debouncePrefix(r.DebounceKey), id[:]...))] = true
		}
		return nil
	})
	if err != nil {
		return append(errs, err)
	}
	if c := u64(tx.Bucket(bucketMeta).Get(metaRuns)); c != uint64(n) {
		bad("meta: run count %d, runs bucket holds %d", c, n)
	}
	for name, keys := range want {
		if name == string(bucketIdem) || (name == string(bucketIdxIdem) && tx.Bucket(bucketIdxIdem) == nil) {
			continue
		}
		seen := 0
		_ = tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
			if !keys[string(k)] {
				// Running runs keep debounce entries; final ones must not.
				bad("%s: entry %q matches no run", name, k)
			}
			seen++
			return nil
		})
		if seen != len(keys) {
			bad("%s: %d entries, runs imply %d", name, seen, len(keys))
		}
	}
	runs := tx.Bucket(bucketRuns)
	_ = tx.Bucket(bucketIdem).ForEach(func(k, v []byte) error {
		if len(v) != 24 {
			bad("idem: key %q has a %d-byte value", k, len(v))
		} else if runs.Get(v[:16]) == nil {
			bad("idem: key %q points at missing run %s", k, store.RunID(v[:16]))
		} else if tx.Bucket(bucketIdemExp).Get(append(append([]byte(nil), v[16:]...), k...)) == nil {
			bad("idem: key %q has no expiry entry", k)
		}
		return nil
	})
	_ = tx.Bucket(bucketBodies).ForEach(func(k, _ []byte) error {
		if runs.Get(k) == nil {
			bad("bodies: body of missing run %x", k)
		}
		return nil
	})
	counts := map[string]uint64{}
	_ = tx.Bucket(bucketKV).ForEach(func(k, _ []byte) error {
		ns, ok := kvNamespace(k)
		if !ok {
			bad("kv: malformed key %q", k)
		}
		counts[ns]++
		return nil
	})
	_ = tx.Bucket(bucketKVCount).ForEach(func(k, v []byte) error {
		if u64(v) != counts[string(k)] {
			bad("kv_count: namespace %q counted %d entries, kv holds %d", k, u64(v), counts[string(k)])
		}
		delete(counts, string(k))
		return nil
	})
	for ns, n := range counts {
		bad("kv_count: namespace %q has no count, kv holds %d entries", ns, n)
	}
	return errs
}
