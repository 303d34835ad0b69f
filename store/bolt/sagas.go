package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// Saga version records (bucket saga_versions, see bolt.go):
//
//	byte     version (1)
//	varint   Created (unix ns)
//	[32]byte sha256 of the source
//	uvarint  length of Origin, then Origin
//	         the source: the rest of the value
//
// The hash is stored so the dedupe check and listings never hash or copy sources.
const sagaCodecVersion = 1

var errCorruptSaga = errors.New("store: corrupt saga version record")

// sagaPrefix length-prefixes the name like kvKey, so every version key of a name starts
// with it and no other name's does.
func sagaPrefix(name string) []byte {
	k := binary.AppendUvarint(make([]byte, 0, 1+len(name)+8), uint64(len(name)))
	return append(k, name...)
}

func sagaKey(name string, number int) []byte {
	return binary.BigEndian.AppendUint64(sagaPrefix(name), uint64(number))
}

func encodeSagaVersion(v *store.SagaVersion, hash [sha256.Size]byte, src []byte) []byte {
	rec := make([]byte, 0, 1+binary.MaxVarintLen64+len(hash)+2+len(v.Origin)+len(src))
	rec = append(rec, sagaCodecVersion)
	rec = binary.AppendVarint(rec, store.TimeNanos(v.Created))
	rec = append(rec, hash[:]...)
	rec = binary.AppendUvarint(rec, uint64(len(v.Origin)))
	rec = append(rec, v.Origin...)
	return append(rec, src...)
}

// decodeSagaVersion fills the fields the record holds; with full it copies the source out
// of bbolt's memory too.
func decodeSagaVersion(rec []byte, v *store.SagaVersion, full bool) (hash [sha256.Size]byte, err error) {
	if len(rec) == 0 || rec[0] != sagaCodecVersion {
		return hash, fmt.Errorf("%w: unknown version", errCorruptSaga)
	}
	rec = rec[1:]
	created, k := binary.Varint(rec)
	if k <= 0 || len(rec)-k < len(hash) {
		return hash, fmt.Errorf("%w: truncated", errCorruptSaga)
	}
	rec = rec[k:]
	copy(hash[:], rec)
	rec = rec[len(hash):]
	n, k := binary.Uvarint(rec)
	if k <= 0 || n > uint64(len(rec)-k) {
		return hash, fmt.Errorf("%w: bad origin", errCorruptSaga)
	}
	v.Created = store.NanosTime(created)
	v.Hash = store.HexHash(hash)
	v.Origin = string(rec[k : k+int(n)])
	v.Source = nil
	if full {
		v.Source = append([]byte(nil), rec[k+int(n):]...)
	}
	return hash, nil
}

// lastSagaVersion moves c to the newest version of the prefix's name and returns its key
// and record, or nil when the name has none.
func lastSagaVersion(c *bbolt.Cursor, prefix []byte) (k, v []byte) {
	if k, _ = c.Seek(prefixEnd(prefix)); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if !isSagaKey(k, prefix) {
		return nil, nil
	}
	return k, v
}

func isSagaKey(k, prefix []byte) bool {
	return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
}

func (b *Store) RecordSagaVersion(ctx context.Context, name string, src []byte, origin string) (store.SagaVersion, bool, error) {
	if err := store.ValidSagaVersion(name, src, origin); err != nil {
		return store.SagaVersion{}, false, err
	}
	// A copy: a caller whose ctx ends returns while fn may still run, and may reuse src.
	src = append([]byte(nil), src...)
	hash := store.SagaHash(src)
	prefix := sagaPrefix(name)
	var out store.SagaVersion
	var created bool
	err := b.write(ctx, func(tx *bbolt.Tx) error {
		out, created = store.SagaVersion{}, false // fn may run twice (batch redone solo)
		// Created at open; a file written before saga versions existed that could not be
		// written at open lacks it, and then this write fails at commit anyway.
		bucket, err := tx.CreateBucketIfNotExists(bucketSagaVersions)
		if err != nil {
			return err
		}
		next := 1
		if k, v := lastSagaVersion(bucket.Cursor(), prefix); k != nil {
			last := store.SagaVersion{Name: name, Number: int(binary.BigEndian.Uint64(k[len(prefix):]))}
			lastHash, err := decodeSagaVersion(v, &last, false)
			if err != nil {
				return fmt.Errorf("saga %s version %d: %w", name, last.Number, err)
			}
			if lastHash == hash {
				out = last
				return nil
			}
			next = last.Number + 1
		}
		out = store.SagaVersion{Name: name, Number: next, Hash: store.HexHash(hash), Created: store.SagaNow(b.clock), Origin: origin}
		if err := bucket.Put(sagaKey(name, next), encodeSagaVersion(&out, hash, src)); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return store.SagaVersion{}, false, fmt.Errorf("record saga %s version: %w", name, err)
	}
	return out, created, nil
}

func (b *Store) SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error) {
	if err := store.ValidSagaName(name); err != nil {
		return nil, err
	}
	prefix := sagaPrefix(name)
	out := []store.SagaVersion{}
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		bucket := tx.Bucket(bucketSagaVersions)
		if bucket == nil { // a read-only file from before saga versions existed
			return nil
		}
		c := bucket.Cursor()
		for k, v := lastSagaVersion(c, prefix); isSagaKey(k, prefix); k, v = c.Prev() {
			sv := store.SagaVersion{Name: name, Number: int(binary.BigEndian.Uint64(k[len(prefix):]))}
			if _, err := decodeSagaVersion(v, &sv, false); err != nil {
				return fmt.Errorf("saga %s version %d: %w", name, sv.Number, err)
			}
			out = append(out, sv)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list saga %s versions: %w", name, err)
	}
	return out, nil
}

func (b *Store) SagaVersion(ctx context.Context, name string, number int) (store.SagaVersion, error) {
	if err := store.ValidSagaName(name); err != nil {
		return store.SagaVersion{}, err
	}
	out := store.SagaVersion{Name: name, Number: number}
	found := false
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		bucket := tx.Bucket(bucketSagaVersions)
		if bucket == nil || number <= 0 {
			return nil
		}
		v := bucket.Get(sagaKey(name, number))
		if v == nil {
			return nil
		}
		found = true
		_, err := decodeSagaVersion(v, &out, true)
		return err
	})
	if err != nil {
		return store.SagaVersion{}, fmt.Errorf("get saga %s version %d: %w", name, number, err)
	}
	if !found {
		return store.SagaVersion{}, fmt.Errorf("get saga %s version %d: %w", name, number, store.ErrNotFound)
	}
	return out, nil
}

// checkSagaVersions verifies every version record decodes, its hash matches its source,
// and each name's numbers run 1, 2, 3... without gaps.
func checkSagaVersions(tx *bbolt.Tx) []error {
	bucket := tx.Bucket(bucketSagaVersions)
	if bucket == nil {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) {
		if len(errs) < 50 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	var prevName string
	prevNumber := 0
	_ = bucket.ForEach(func(k, v []byte) error {
		n, w := binary.Uvarint(k)
		if w <= 0 || uint64(len(k)-w) != n+8 {
			bad("saga_versions: malformed key %x", k)
			return nil
		}
		name := string(k[w : w+int(n)])
		number := int(binary.BigEndian.Uint64(k[w+int(n):]))
		if store.ValidSagaName(name) != nil {
			bad("saga_versions: bad name %q", name)
		}
		if name != prevName {
			prevName, prevNumber = name, 0
		}
		if number != prevNumber+1 {
			bad("saga_versions: %s version %d follows %d", name, number, prevNumber)
		}
		prevNumber = number
		sv := store.SagaVersion{}
		hash, err := decodeSagaVersion(v, &sv, true)
		if err != nil {
			bad("saga_versions: %s version %d: %v", name, number, err)
			return nil
		}
		if store.SagaHash(sv.Source) != hash {
			bad("saga_versions: %s version %d: hash does not match the source", name, number)
		}
		return nil
	})
	return errs
}
