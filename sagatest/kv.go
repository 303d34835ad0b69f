package sagatest

import (
	"context"
	"sync"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// caseKV is one case's kv state: a map on the case's fake clock, so a ttl expires as the
// run's retry waits move the clock. A case is one run, so nothing needs a real backend.
type caseKV struct {
	clock *fakeClock
	mu    sync.Mutex
	m     map[[2]string]kvEntry
}

type kvEntry struct {
	value   []byte
	expires time.Time // zero: never
}

func newCaseKV(clock *fakeClock) *caseKV {
	return &caseKV{clock: clock, m: map[[2]string]kvEntry{}}
}

func (k *caseKV) live(key [2]string) (kvEntry, bool) {
	e, ok := k.m[key]
	if ok && !e.expires.IsZero() && !k.clock.Now().Before(e.expires) {
		delete(k.m, key)
		return kvEntry{}, false
	}
	return e, ok
}

func (k *caseKV) Get(_ context.Context, namespace, key string) ([]byte, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.live([2]string{namespace, key})
	return e.value, ok, nil
}

func (k *caseKV) Put(_ context.Context, namespace, key string, value []byte, opts store.PutOptions) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := [2]string{namespace, key}
	if _, ok := k.live(id); !ok && opts.MaxEntries > 0 {
		n := 0
		for other := range k.m {
			if _, live := k.live(other); live && other[0] == namespace {
				n++
			}
		}
		if n >= opts.MaxEntries {
			return store.ErrKVFull
		}
	}
	e := kvEntry{value: append([]byte(nil), value...)}
	if opts.TTL > 0 {
		e.expires = k.clock.Now().Add(opts.TTL)
	}
	k.m[id] = e
	return nil
}

func (k *caseKV) Delete(_ context.Context, namespace, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, [2]string{namespace, key})
	return nil
}
