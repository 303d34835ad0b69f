package bolt

import (
	"context"
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/pushbackd/pushbackd/store"
)

// The bolt store as the source of a copy (store.Exporter): each kind is read in one read
// transaction, a consistent snapshot of a stopped instance's file, and handed over in
// batches; fn runs inside that transaction, so what it gets is copied out of bbolt's memory.

var _ store.Exporter = (*Store)(nil)

// exportBatches walks bucket in key order, turning each entry into zero or one record,
// and calls fn with every ExportBatch records.
func exportBatches[T any](ctx context.Context, b *Store, bucket []byte, conv func(tx *bbolt.Tx, k, v []byte) (T, bool, error), fn func([]T) error) error {
	return b.view(ctx, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucket)
		if bk == nil { // saga_versions in a read-only file from before it existed
			return nil
		}
		batch := make([]T, 0, store.ExportBatch)
		c := bk.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			rec, ok, err := conv(tx, k, v)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if batch = append(batch, rec); len(batch) == store.ExportBatch {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := fn(batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			return fn(batch)
		}
		return nil
	})
}

func (b *Store) ExportRuns(ctx context.Context, fn func([]store.ExportedRun) error) error {
	return exportBatches(ctx, b, bucketRuns, func(tx *bbolt.Tx, k, _ []byte) (store.ExportedRun, bool, error) {
		if len(k) != 16 {
			return store.ExportedRun{}, false, fmt.Errorf("export runs: %w: run key of %d bytes", store.ErrCorrupt, len(k))
		}
		id := store.RunID(k)
		r, err := loadRun(tx, id, true)
		if err != nil {
			return store.ExportedRun{}, false, fmt.Errorf("export runs: %w", err)
		}
		e, _, err := getEntry(tx, id)
		if err != nil {
			return store.ExportedRun{}, false, fmt.Errorf("export runs: %w", err)
		}
		return store.ExportedRun{Run: r, Parked: e.parked}, true, nil
	}, fn)
}

func (b *Store) ExportRunKeys(ctx context.Context, fn func([]store.RunKey) error) error {
	now := b.clock.Now().UnixNano()
	return exportBatches(ctx, b, bucketIdem, func(_ *bbolt.Tx, k, v []byte) (store.RunKey, bool, error) {
		if len(v) != 24 {
			return store.RunKey{}, false, fmt.Errorf("export keys: %w: key entry of %d bytes", store.ErrCorrupt, len(v))
		}
		exp := int64(u64(v[16:]))
		if now >= exp {
			return store.RunKey{}, false, nil
		}
		return store.RunKey{Key: string(k), RunID: store.RunID(v[:16]).String(), Expires: store.NanosTime(exp)}, true, nil
	}, fn)
}

func (b *Store) ExportKV(ctx context.Context, fn func([]store.KVEntry) error) error {
	now := b.clock.Now().UnixNano()
	return exportBatches(ctx, b, bucketKV, func(_ *bbolt.Tx, k, v []byte) (store.KVEntry, bool, error) {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) < n || len(v) < 8 {
			return store.KVEntry{}, false, fmt.Errorf("export kv: %w: malformed entry", store.ErrCorrupt)
		}
		e := store.KVEntry{Namespace: string(k[w : w+int(n)]), Key: string(k[w+int(n):]), Value: append([]byte{}, v[8:]...)}
		if exp := int64(u64(v[:8])); exp != 0 {
			if now >= exp {
				return e, false, nil
			}
			e.Expires = store.NanosTime(exp)
		}
		return e, true, nil
	}, fn)
}

func (b *Store) ExportSagaVersions(ctx context.Context, fn func([]store.SagaVersion) error) error {
	return exportBatches(ctx, b, bucketSagaVersions, func(_ *bbolt.Tx, k, v []byte) (store.SagaVersion, bool, error) {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) != n+8 {
			return store.SagaVersion{}, false, fmt.Errorf("export saga versions: %w: malformed key", errCorruptSaga)
		}
		sv := store.SagaVersion{Name: string(k[w : w+int(n)]), Number: int(binary.BigEndian.Uint64(k[w+int(n):]))}
		if _, err := decodeSagaVersion(v, &sv, true); err != nil {
			return sv, false, fmt.Errorf("export saga version %s %d: %w", sv.Name, sv.Number, err)
		}
		return sv, true, nil
	}, fn)
}
