package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// KV is a store.KV in memory: for tests, and the reference the contract tests hold other
// implementations to. Nothing survives a restart.
type KV struct {
	clock store.Clock

	mu   sync.Mutex
	data map[string]map[string]memEntry
	puts int
}

type memEntry struct {
	value   []byte
	expires time.Time // zero: never
}

var _ store.KV = (*KV)(nil)

// sweepEvery bounds the memory held by expired keys nobody reads again: every so many puts,
// expired entries are dropped.
const sweepEvery = 1024

// NewKV returns an empty KV; a nil clock is the system clock.
func NewKV(clock store.Clock) *KV {
	if clock == nil {
		clock = store.SystemClock{}
	}
	return &KV{clock: clock, data: map[string]map[string]memEntry{}}
}

func (m *KV) Get(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := store.ValidKey(namespace, key); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[namespace][key]
	if !ok {
		return nil, false, nil
	}
	if e.expired(now) {
		delete(m.data[namespace], key)
		return nil, false, nil
	}
	return append([]byte(nil), e.value...), true, nil
}

func (m *KV) Put(ctx context.Context, namespace, key string, value []byte, opts store.PutOptions) error {
	if err := store.ValidKey(namespace, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := m.clock.Now()
	e := memEntry{value: append([]byte(nil), value...)}
	if opts.TTL > 0 {
		e.expires = now.Add(opts.TTL)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ns := m.data[namespace]
	if ns == nil {
		ns = map[string]memEntry{}
		m.data[namespace] = ns
	}
	if _, ok := ns[key]; !ok && opts.MaxEntries > 0 && len(ns) >= opts.MaxEntries {
		m.sweep(now) // expired entries must not keep a namespace full
		if len(ns) >= opts.MaxEntries {
			return fmt.Errorf("kv put: %w: namespace %s holds %d entries, the limit is %d", store.ErrKVFull, namespace, len(ns), opts.MaxEntries)
		}
		m.data[namespace] = ns // sweep drops namespaces it empties
	}
	ns[key] = e
	m.puts++
	if m.puts%sweepEvery == 0 {
		m.sweep(now)
	}
	return nil
}

func (m *KV) Delete(ctx context.Context, namespace, key string) error {
	if err := store.ValidKey(namespace, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data[namespace], key)
	return nil
}

func (m *KV) sweep(now time.Time) {
	for ns, keys := range m.data {
		for k, e := range keys {
			if e.expired(now) {
				delete(keys, k)
			}
		}
		if len(keys) == 0 {
			delete(m.data, ns)
		}
	}
}

func (e memEntry) expired(now time.Time) bool {
	return !e.expires.IsZero() && !now.Before(e.expires)
}

// Len is the number of keys held, expired ones not yet dropped included.
func (m *KV) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, keys := range m.data {
		n += len(keys)
	}
	return n
}

// sweepExpired drops every expired key now: Prune calls it so expired state does not wait
// for the next sweep a Put would trigger.
func (m *KV) sweepExpired() {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
}
