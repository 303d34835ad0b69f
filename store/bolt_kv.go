package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// kvKey length-prefixes the namespace, so ("a", "bc") and ("ab", "c") cannot collide
// whatever bytes they hold.
func kvKey(namespace, key string) []byte {
	k := binary.AppendUvarint(make([]byte, 0, 2+len(namespace)+len(key)), uint64(len(namespace)))
	k = append(k, namespace...)
	return append(k, key...)
}

func (b *Bolt) Get(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := validKey(namespace, key); err != nil {
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

func (b *Bolt) Put(ctx context.Context, namespace, key string, value []byte, ttl time.Duration) error {
	if err := validKey(namespace, key); err != nil {
		return err
	}
	k := kvKey(namespace, key)
	var exp uint64
	if ttl > 0 {
		exp = uint64(b.clock.Now().Add(ttl).UnixNano())
	}
	v := append(be64(exp), value...)
	err := b.write(ctx, func(tx *bbolt.Tx) error {
		if err := dropKVExpiry(tx, k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketKV).Put(k, v); err != nil {
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
	return nil
}

func (b *Bolt) Delete(ctx context.Context, namespace, key string) error {
	if err := validKey(namespace, key); err != nil {
		return err
	}
	k := kvKey(namespace, key)
	err := b.write(ctx, func(tx *bbolt.Tx) error {
		if err := dropKVExpiry(tx, k); err != nil {
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
