package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// kvKey length-prefixes the namespace, so ("a", "bc") and ("ab", "c") cannot collide
// whatever bytes they hold.
func kvKey(namespace, key string) []byte {
	k := binary.AppendUvarint(make([]byte, 0, 2+len(namespace)+len(key)), uint64(len(namespace)))
	k = append(k, namespace...)
	return append(k, key...)
}

func (b *Store) Get(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := store.ValidKey(namespace, key); err != nil {
		return nil, false, err
	}
	now := b.clock.Now().UnixNano()
	var out []byte
	var found bool
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get(kvKey(namespace, key))
		if len(v) < 8 {
			return nil
		}
		// Expired entries stay until Prune sweeps them; reads treat them as absent.
		if exp := int64(u64(v[:8])); exp != 0 && now >= exp {
			return nil
		}
		out, found = append([]byte{}, v[8:]...), true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("kv get: %w", err)
	}
	return out, found, nil
}

func (b *Store) Put(ctx context.Context, namespace, key string, value []byte, opts store.PutOptions) error {
	if err := store.ValidKey(namespace, key); err != nil {
		return err
	}
	k := kvKey(namespace, key)
	now := b.clock.Now()
	var exp uint64
	if opts.TTL > 0 {
		exp = uint64(now.Add(opts.TTL).UnixNano())
	}
	v := append(be64(exp), value...)
	var full error
	err := b.write(ctx, func(tx *bbolt.Tx) error {
		full = nil
		kv := tx.Bucket(bucketKV)
		if kv.Get(k) == nil {
			n, err := kvRoom(tx, namespace, opts.MaxEntries, now)
			if err != nil {
				return err
			}
			if opts.MaxEntries > 0 && n >= uint64(opts.MaxEntries) {
				full = fmt.Errorf("kv put: %w: namespace %s holds %d entries, the limit is %d", store.ErrKVFull, namespace, n, opts.MaxEntries)
				return nil
			}
			if err := addKVCount(tx, namespace, 1); err != nil {
				return err
			}
		} else if err := dropKVExpiry(tx, k); err != nil {
			return err
		}
		if err := kv.Put(k, v); err != nil {
			return err
		}
		if exp != 0 {
			return tx.Bucket(bucketKVExp).Put(append(be64(exp), k...), empty)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kv put: %w", err)
	}
	return full
}

// kvSweepOnFull bounds the expired entries a Put into a full namespace sweeps first.
const kvSweepOnFull = 1000

// kvRoom returns how many entries namespace holds. When that is at limit, expired entries
// (of any namespace, oldest first, at most kvSweepOnFull) are swept first, so entries
// that expired since the last Prune do not keep a namespace full. The sweep commits even
// when the put is then refused: it is work Prune would do, and doing it twice is harmless.
func kvRoom(tx *bbolt.Tx, namespace string, limit int, now time.Time) (uint64, error) {
	n := kvCount(tx, namespace)
	if limit <= 0 || n < uint64(limit) {
		return n, nil
	}
	if _, err := sweepExpired(tx, bucketKVExp, bucketKV, now, kvSweepOnFull, false); err != nil {
		return 0, err
	}
	return kvCount(tx, namespace), nil
}

func (b *Store) Delete(ctx context.Context, namespace, key string) error {
	if err := store.ValidKey(namespace, key); err != nil {
		return err
	}
	k := kvKey(namespace, key)
	err := b.write(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketKV).Get(k) == nil {
			return nil
		}
		if err := dropKVExpiry(tx, k); err != nil {
			return err
		}
		if err := addKVCount(tx, namespace, -1); err != nil {
			return err
		}
		return tx.Bucket(bucketKV).Delete(k)
	})
	if err != nil {
		return fmt.Errorf("kv delete: %w", err)
	}
	return nil
}

// dropKVExpiry removes the expiry entry of the value k holds now, if it has one.
func dropKVExpiry(tx *bbolt.Tx, k []byte) error {
	old := tx.Bucket(bucketKV).Get(k)
	if len(old) < 8 || u64(old[:8]) == 0 {
		return nil
	}
	return tx.Bucket(bucketKVExp).Delete(append(append([]byte(nil), old[:8]...), k...))
}

// kvCount is how many entries namespace holds, expired ones not yet swept included.
func kvCount(tx *bbolt.Tx, namespace string) uint64 {
	return u64(tx.Bucket(bucketKVCount).Get([]byte(namespace)))
}

// addKVCount moves namespace's entry count by delta; an empty namespace has no count entry.
func addKVCount(tx *bbolt.Tx, namespace string, delta int64) error {
	counts := tx.Bucket(bucketKVCount)
	n := int64(u64(counts.Get([]byte(namespace)))) + delta
	if n <= 0 {
		return counts.Delete([]byte(namespace))
	}
	return counts.Put([]byte(namespace), be64(uint64(n)))
}

// kvNamespace is the namespace of a kv bucket key (kvKey).
func kvNamespace(k []byte) (string, bool) {
	n, w := binary.Uvarint(k)
	if w <= 0 || uint64(len(k)-w) < n {
		return "", false
	}
	return string(k[w : w+int(n)]), true
}
