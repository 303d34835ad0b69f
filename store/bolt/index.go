package bolt

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/pushbackd/pushbackd/store"
	"go.etcd.io/bbolt"
)

// maxKeyLen bounds keys taken from senders (idempotency, debounce): bbolt refuses keys over
// 32 KiB, and long keys bloat pages; longer ones are stored as their SHA-256.
const maxKeyLen = 512

func boundedKey(k string) []byte {
	if len(k) <= maxKeyLen {
		return []byte(k)
	}
	sum := sha256.Sum256([]byte(k))
	return append([]byte("\xffsha256:"), sum[:]...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// join builds a key from NUL-terminated parts and an optional id.
func join(id []byte, parts ...string) []byte {
	n := len(id)
	for _, p := range parts {
		n += len(p) + 1
	}
	k := make([]byte, 0, n)
	for _, p := range parts {
		k = append(k, p...)
		k = append(k, 0)
	}
	return append(k, id...)
}

func statusScopeKey(st store.Status, r *store.Run, id store.RunID) []byte {
	return join(id[:], string(st), r.Partner, r.Site, r.Endpoint)
}

func debouncePrefix(key string) []byte {
	k := boundedKey(key)
	return append(binary.AppendUvarint(nil, uint64(len(k))), k...)
}

var empty = []byte{}

// idemIndexKey is run id's idx_idem entry: length-prefixed like idx_debounce, so one key's
// entries are one prefix that no longer key shares.
func idemIndexKey(key string, id store.RunID) []byte {
	return append(debouncePrefix(key), id[:]...)
}

// backfillIdemIndex fills a new idx_idem from the runs already stored.
func backfillIdemIndex(tx *bbolt.Tx) error {
	idx := tx.Bucket(bucketIdxIdem)
	return tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		if len(k) != 16 {
			return nil // Check reports it
		}
		var r store.Run
		if _, err := store.DecodeRun(v, &r, false); err != nil {
			return fmt.Errorf("index run %x by idempotency key: %w", k, err)
		}
		if r.IdempotencyKey == "" {
			return nil
		}
		return idx.Put(idemIndexKey(r.IdempotencyKey, store.RunID(k)), empty)
	})
}

// putIndexes writes every index entry of run id, the record itself excepted.
func putIndexes(tx *bbolt.Tx, id store.RunID, r *store.Run) error {
	if err := tx.Bucket(bucketIdxStatusScope).Put(statusScopeKey(r.Status, r, id), empty); err != nil {
		return err
	}
	// (A file from before idx_idem has none until open fills it from the runs.)
	if idx := tx.Bucket(bucketIdxIdem); idx != nil && r.IdempotencyKey != "" {
		if err := idx.Put(idemIndexKey(r.IdempotencyKey, id), empty); err != nil {
			return err
		}
	}
	if r.DebounceKey != "" && !r.Status.Final() {
		return tx.Bucket(bucketIdxDebounce).Put(append(debouncePrefix(r.DebounceKey), id[:]...), empty)
	}
	return nil
}

// moveStatus moves run id's status entry from old to r.Status, and drops its debounce
// entry once it is final.
func moveStatus(tx *bbolt.Tx, id store.RunID, old store.Status, r *store.Run) error {
	if old == r.Status {
		return nil
	}
	sst := tx.Bucket(bucketIdxStatusScope)
	if err := sst.Delete(statusScopeKey(old, r, id)); err != nil {
		return err
	}
	if err := sst.Put(statusScopeKey(r.Status, r, id), empty); err != nil {
		return err
	}
	if r.DebounceKey != "" && r.Status.Final() {
		return tx.Bucket(bucketIdxDebounce).Delete(append(debouncePrefix(r.DebounceKey), id[:]...))
	}
	return nil
}

// stream walks the keys under one prefix whose trailing id lies in [lo, hi), in id order.
type stream struct {
	c      *bbolt.Cursor
	prefix []byte
	lo, hi []byte // full keys; nil = open
	desc   bool
	key    []byte // current key; nil when exhausted
}

func newStream(b *bbolt.Bucket, prefix []byte, q *store.ListQuery) *stream {
	s := &stream{c: b.Cursor(), prefix: prefix, desc: q.Desc}
	if q.Lo != nil {
		s.lo = append(append([]byte(nil), prefix...), q.Lo[:]...)
	}
	if q.Hi != nil {
		s.hi = append(append([]byte(nil), prefix...), q.Hi[:]...)
	}
	var k []byte
	if s.desc {
		// The largest key below the upper bound: Seek lands on the first key at or above
		// it, so step back once (or start from the end when nothing is above).
		upper := s.hi
		if upper == nil {
			upper = prefixEnd(prefix)
		}
		if upper == nil {
			k, _ = s.c.Last()
		} else if k, _ = s.c.Seek(upper); k == nil {
			k, _ = s.c.Last()
		} else {
			k, _ = s.c.Prev()
		}
	} else {
		lower := s.lo
		if lower == nil {
			lower = prefix
		}
		k, _ = s.c.Seek(lower)
	}
	s.set(k)
	return s
}

// prefixEnd is the first key after every key starting with prefix (which ends in NUL or is
// a length-prefixed key), or nil for the empty prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func (s *stream) set(k []byte) {
	if k == nil || !bytes.HasPrefix(k, s.prefix) || len(k) != len(s.prefix)+16 ||
		(s.lo != nil && bytes.Compare(k, s.lo) < 0) || (s.hi != nil && bytes.Compare(k, s.hi) >= 0) {
		s.key = nil
		return
	}
	s.key = k
}

func (s *stream) next() {
	var k []byte
	if s.desc {
		k, _ = s.c.Prev()
	} else {
		k, _ = s.c.Next()
	}
	s.set(k)
}

func (s *stream) id() (id store.RunID) {
	copy(id[:], s.key[len(s.key)-16:])
	return id
}

// merger yields ids from several streams in one id order: a heap of the streams' heads.
type merger struct {
	streams []*stream
	desc    bool
}

func newMerger(streams []*stream, desc bool) *merger {
	m := &merger{desc: desc}
	for _, s := range streams {
		if s.key != nil {
			m.streams = append(m.streams, s)
		}
	}
	heap.Init(m)
	return m
}

func (m *merger) Len() int { return len(m.streams) }
func (m *merger) Less(i, j int) bool {
	a, b := m.streams[i].key, m.streams[j].key
	c := bytes.Compare(a[len(a)-16:], b[len(b)-16:])
	if m.desc {
		return c > 0
	}
	return c < 0
}
func (m *merger) Swap(i, j int) { m.streams[i], m.streams[j] = m.streams[j], m.streams[i] }
func (m *merger) Push(x any)    { m.streams = append(m.streams, x.(*stream)) }
func (m *merger) Pop() any {
	s := m.streams[len(m.streams)-1]
	m.streams = m.streams[:len(m.streams)-1]
	return s
}

// next returns the next id, or false when every stream is done.
func (m *merger) next() (store.RunID, bool) {
	if len(m.streams) == 0 {
		return store.RunID{}, false
	}
	top := m.streams[0]
	id := top.id()
	top.next()
	if top.key == nil {
		heap.Pop(m)
	} else {
		heap.Fix(m, 0)
	}
	return id, true
}

// scopePrefixes expands a partner/site/endpoint pattern ("" = any) under base into the
// prefixes of every matching scope present in bucket b: fixed parts are appended, and each
// wildcard is replaced by the distinct values found, one Seek per value.
func scopePrefixes(b *bbolt.Bucket, base []byte, parts []string) [][]byte {
	if len(parts) == 0 {
		return [][]byte{base}
	}
	if parts[0] != "" {
		next := append(append(append([]byte(nil), base...), parts[0]...), 0)
		return scopePrefixes(b, next, parts[1:])
	}
	var out [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(base); k != nil && bytes.HasPrefix(k, base); {
		rest := k[len(base):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			break // not a scope key: cannot happen in a consistent file
		}
		value := rest[:i]
		next := append(append(append([]byte(nil), base...), value...), 0)
		out = append(out, scopePrefixes(b, next, parts[1:])...)
		// Skip every key with this value: the NUL after it becomes 0x01. (A copy: next
		// may be one of the prefixes returned.)
		skip := append([]byte(nil), next...)
		skip[len(skip)-1] = 1
		k, _ = c.Seek(skip)
	}
	return out
}
