package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// Upgrading a layout version 1 file. Version 1 scoped idempotency keys as
// "<partner>/<endpoint>/<key>" and debounce keys as "<partner>/<saga>/<key>": a site's
// endpoint shared its keys with the partner's. Version 2 scopes both by partner, site and
// endpoint (store.IdempotencyKey, store.DebounceKey) and counts kv entries per namespace.
//
// The first transaction moves the old idem and idx_debounce buckets under "upgrade", puts
// empty ones in their place, counts the kv entries and marks the file version 2, so an
// older pushbackd refuses it from then on (upgradeV2 then takes it to version 3). Later transactions, a chunk each, take entries
// out of the moved buckets and file them under keys recomputed from the run each points to
// (its partner, site, endpoint and saga); expired ones and ones whose run is gone or final
// are dropped. The run's record gets the new key too, so pruning the run finds its key.
// When both moved buckets are empty, "upgrade" goes. A crash between chunks leaves
// "upgrade" in place, and the next open carries on where it stopped: nothing is redone,
// because an entry leaves the moved bucket in the transaction that files it anew.
//
// New debounce keys get the default scope, the endpoint: a run waiting at the upgrade is
// superseded by the next event for its key on its own endpoint, as it would have been
// before. (A saga that sets a wider debounce.scope after the upgrade does not supersede
// runs that were waiting before it: they run once when their wait ends.)

// upgradeChunk bounds the entries one upgrade transaction moves, so a file with many live
// keys is not rewritten in one transaction held in memory.
const upgradeChunk = 1000

func upgradeV1(db *bbolt.DB, now time.Time) error {
	if err := db.Update(startUpgrade); err != nil {
		return err
	}
	for {
		var done bool
		err := db.Update(func(tx *bbolt.Tx) error {
			var err error
			done, err = upgradeSome(tx, now, upgradeChunk)
			return err
		})
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// startUpgrade is the first transaction; on a file whose upgrade has started it does
// nothing.
func startUpgrade(tx *bbolt.Tx) error {
	if tx.Bucket(bucketUpgrade) != nil {
		return nil
	}
	for _, name := range allBuckets() {
		if bytes.Equal(name, bucketKVCount) {
			continue // countKV makes it
		}
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	up, err := tx.CreateBucket(bucketUpgrade)
	if err != nil {
		return err
	}
	for _, name := range [...][]byte{bucketIdem, bucketIdxDebounce} {
		if err := tx.MoveBucket(name, nil, up); err != nil {
			return fmt.Errorf("move bucket %s: %w", name, err)
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	if err := countKV(tx); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(metaSchema, be64(2))
}

// upgradeV2 builds the work queue of layout version 3 from a version 2 file's unfinished
// runs, in one transaction (they are few: limits.queue bounds them): each gets its queue
// entry, a serialize_by key's runs are filed in arrival order with all but the first
// parked, and the runnable count is set. A run found running belonged to a process that is
// gone, so it is due at once. Run in a transaction of its own, or after upgradeV1's.
func upgradeV2(tx *bbolt.Tx, now time.Time) error {
	for _, name := range [...][]byte{bucketQueue, bucketIdxDue, bucketIdxSerial} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if err := tx.Bucket(bucketMeta).Put(metaRunnable, be64(0)); err != nil {
		return err
	}
	var ids []store.RunID
	m := statusMerger(tx, []store.Status{store.StatusQueued, store.StatusRunning, store.StatusWaiting}, nil)
	for id, ok := m.next(); ok; id, ok = m.next() {
		ids = append(ids, id)
	}
	for _, id := range ids {
		r, err := loadRun(tx, id, false)
		if err != nil {
			return err
		}
		if r == nil {
			continue
		}
		if err := reschedule(tx, id, r, "", nil, now); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(metaSchema, be64(3))
}

// upgradeV3 takes a version 3 file to version 4: idx_status and idx_scope go
// (idx_status_scope serves every status and scope query) and the version is bumped, so a
// pushbackd that still reads them refuses the file rather than trust indexes no longer kept.
func upgradeV3(tx *bbolt.Tx) error {
	for _, name := range [...][]byte{bucketIdxStatus, bucketIdxScope} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("delete bucket %s: %w", name, err)
			}
		}
	}
	return tx.Bucket(bucketMeta).Put(metaSchema, be64(schemaVersion))
}

// countKV fills kv_count from the kv bucket: once, at the upgrade.
func countKV(tx *bbolt.Tx) error {
	if tx.Bucket(bucketKVCount) != nil {
		if err := tx.DeleteBucket(bucketKVCount); err != nil {
			return err
		}
	}
	counts, err := tx.CreateBucket(bucketKVCount)
	if err != nil {
		return err
	}
	n := map[string]uint64{}
	if err := tx.Bucket(bucketKV).ForEach(func(k, _ []byte) error {
		if ns, ok := kvNamespace(k); ok {
			n[ns]++
		}
		return nil
	}); err != nil {
		return err
	}
	for ns, c := range n {
		if err := counts.Put([]byte(ns), be64(c)); err != nil {
			return err
		}
	}
	return nil
}

// upgradeSome files up to limit old entries anew and reports whether none are left.
func upgradeSome(tx *bbolt.Tx, now time.Time, limit int) (bool, error) {
	up := tx.Bucket(bucketUpgrade)
	if up == nil {
		return true, nil
	}
	moved := 0
	for _, old := range [...]struct {
		name []byte
		file func(tx *bbolt.Tx, k, v []byte, now time.Time) error
	}{{bucketIdem, upgradeIdem}, {bucketIdxDebounce, upgradeDebounce}} {
		b := up.Bucket(old.name)
		if b == nil {
			continue
		}
		var keys, vals [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil && moved+len(keys) < limit; k, v = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
			vals = append(vals, append([]byte(nil), v...))
		}
		for i, k := range keys {
			if err := old.file(tx, k, vals[i], now); err != nil {
				return false, err
			}
			if err := b.Delete(k); err != nil {
				return false, err
			}
		}
		moved += len(keys)
		if moved >= limit {
			return false, nil
		}
	}
	return true, tx.DeleteBucket(bucketUpgrade)
}

// upgradeIdem files an old idempotency key (k, as stored: the key or its hash) anew.
func upgradeIdem(tx *bbolt.Tx, k, v []byte, now time.Time) error {
	if len(v) != 24 {
		return nil
	}
	if err := tx.Bucket(bucketIdemExp).Delete(append(append([]byte(nil), v[16:]...), k...)); err != nil {
		return err
	}
	expires := int64(u64(v[16:]))
	if now.UnixNano() >= expires {
		return nil
	}
	id := store.RunID(v[:16])
	return rewriteRun(tx, id, func(r *store.Run) error {
		if r.IdempotencyKey == "" {
			return nil
		}
		raw := strings.TrimPrefix(r.IdempotencyKey, r.Partner+"/"+r.Endpoint+"/")
		r.IdempotencyKey = store.IdempotencyKey(store.KeyScope{Partner: r.Partner, Site: r.Site, Endpoint: r.Endpoint}, raw)
		return claimKey(tx, r.IdempotencyKey, id, time.Unix(0, expires))
	})
}

// upgradeDebounce files an old debounce index entry (k: length-prefixed key, then the id)
// anew.
func upgradeDebounce(tx *bbolt.Tx, k, _ []byte, _ time.Time) error {
	n, w := binary.Uvarint(k)
	if w <= 0 || uint64(len(k)-w) != n+16 {
		return nil
	}
	id := store.RunID(k[len(k)-16:])
	return rewriteRun(tx, id, func(r *store.Run) error {
		if r.DebounceKey == "" || r.Status.Final() {
			return nil
		}
		raw := strings.TrimPrefix(r.DebounceKey, r.Partner+"/"+r.Saga+"/")
		r.DebounceKey = store.DebounceKey(store.KeyScope{Partner: r.Partner, Site: r.Site, Endpoint: r.Endpoint}, r.Saga, raw)
		return tx.Bucket(bucketIdxDebounce).Put(append(debouncePrefix(r.DebounceKey), id[:]...), empty)
	})
}

// rewriteRun applies fn to the stored run id and stores the result; a run that is gone is
// skipped.
func rewriteRun(tx *bbolt.Tx, id store.RunID, fn func(r *store.Run) error) error {
	runs := tx.Bucket(bucketRuns)
	v := runs.Get(id[:])
	if v == nil {
		return nil
	}
	r := store.Run{ID: id.String()}
	if _, err := store.DecodeRun(v, &r, true); err != nil {
		return fmt.Errorf("run %s: %w", id, err)
	}
	if err := fn(&r); err != nil {
		return err
	}
	return runs.Put(id[:], store.EncodeRun(nil, &r, nil))
}
