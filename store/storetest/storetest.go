// Package storetest holds the contract tests every store implementation must pass, so the
// in-memory, bbolt and later Postgres stores behave alike.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// ManualClock is a store.Clock that moves only when told to.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewManualClock starts at a fixed instant, so failures reproduce.
func NewManualClock() *ManualClock {
	return &ManualClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestKV runs the KV contract against fresh stores from newKV, which must build the store on
// the given clock.
func TestKV(t *testing.T, newKV func(t *testing.T, clock store.Clock) store.KV) {
	ctx := context.Background()
	const ns = "acme"

	t.Run("a key never written is absent", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		v, found, err := kv.Get(ctx, ns, "nothing")
		if err != nil || found || v != nil {
			t.Fatalf("Get = %q, %v, %v; want nil, false, nil", v, found, err)
		}
	})

	t.Run("a put value reads back as the same bytes", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		want := []byte(`{"milestone":"Started","n":1}`)
		mustPut(t, kv, ns, "k", want, 0)
		got, found, err := kv.Get(ctx, ns, "k")
		if err != nil || !found || !bytes.Equal(got, want) {
			t.Fatalf("Get = %q, %v, %v; want %q", got, found, err, want)
		}
	})

	t.Run("a second put replaces the value", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		mustPut(t, kv, ns, "k", []byte(`1`), 0)
		mustPut(t, kv, ns, "k", []byte(`2`), 0)
		got, _, _ := kv.Get(ctx, ns, "k")
		if string(got) != "2" {
			t.Fatalf("Get = %q, want 2", got)
		}
	})

	t.Run("namespaces do not see each other's keys", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		mustPut(t, kv, "acme", "k", []byte(`"acme"`), 0)
		mustPut(t, kv, "globex", "k", []byte(`"globex"`), 0)
		got, _, _ := kv.Get(ctx, "acme", "k")
		if string(got) != `"acme"` {
			t.Fatalf("acme sees %q", got)
		}
		if err := kv.Delete(ctx, "globex", "k"); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := kv.Get(ctx, "acme", "k"); !found {
			t.Fatal("deleting globex's key removed acme's")
		}
	})

	t.Run("a deleted key is absent and deleting it again is fine", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		mustPut(t, kv, ns, "k", []byte(`true`), 0)
		for i := 0; i < 2; i++ {
			if err := kv.Delete(ctx, ns, "k"); err != nil {
				t.Fatalf("Delete #%d: %v", i+1, err)
			}
		}
		if _, found, _ := kv.Get(ctx, ns, "k"); found {
			t.Fatal("key still there after Delete")
		}
	})

	t.Run("a value with a ttl is there until the ttl passes", func(t *testing.T) {
		clock := NewManualClock()
		kv := newKV(t, clock)
		mustPut(t, kv, ns, "k", []byte(`"v"`), time.Minute)
		clock.Advance(59 * time.Second)
		if _, found, _ := kv.Get(ctx, ns, "k"); !found {
			t.Fatal("expired before its ttl")
		}
		clock.Advance(time.Second)
		if _, found, _ := kv.Get(ctx, ns, "k"); found {
			t.Fatal("still there when its ttl passed")
		}
	})

	t.Run("a put without ttl clears an earlier ttl", func(t *testing.T) {
		clock := NewManualClock()
		kv := newKV(t, clock)
		mustPut(t, kv, ns, "k", []byte(`1`), time.Second)
		mustPut(t, kv, ns, "k", []byte(`2`), 0)
		clock.Advance(time.Hour)
		if _, found, _ := kv.Get(ctx, ns, "k"); !found {
			t.Fatal("expired although the last put had no ttl")
		}
	})

	t.Run("the caller's slices are not kept or shared", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		in := []byte(`"abc"`)
		mustPut(t, kv, ns, "k", in, 0)
		in[1] = 'X'
		out, _, _ := kv.Get(ctx, ns, "k")
		if string(out) != `"abc"` {
			t.Fatalf("store kept the caller's slice: %q", out)
		}
		out[1] = 'Y'
		again, _, _ := kv.Get(ctx, ns, "k")
		if string(again) != `"abc"` {
			t.Fatalf("store returned its own slice: %q", again)
		}
	})

	t.Run("an empty namespace or key is refused", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		for _, c := range []struct{ ns, key string }{{"", "k"}, {ns, ""}} {
			if err := kv.Put(ctx, c.ns, c.key, []byte(`1`), store.PutOptions{}); !errors.Is(err, store.ErrEmptyKey) {
				t.Errorf("Put(%q, %q) = %v, want ErrEmptyKey", c.ns, c.key, err)
			}
			if _, _, err := kv.Get(ctx, c.ns, c.key); !errors.Is(err, store.ErrEmptyKey) {
				t.Errorf("Get(%q, %q) = %v, want ErrEmptyKey", c.ns, c.key, err)
			}
		}
	})

	t.Run("a cancelled context is an error", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := kv.Put(cctx, ns, "k", []byte(`1`), store.PutOptions{}); err == nil {
			t.Fatal("Put with a cancelled context succeeded")
		}
	})

	t.Run("a full namespace refuses a new key but replaces and deletes as before", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		capped := store.PutOptions{MaxEntries: 3}
		for _, k := range []string{"k1", "k2", "k3"} {
			if err := kv.Put(ctx, ns, k, []byte(`1`), capped); err != nil {
				t.Fatalf("Put(%s) under the cap: %v", k, err)
			}
		}
		err := kv.Put(ctx, ns, "k4", []byte(`1`), capped)
		if !errors.Is(err, store.ErrKVFull) {
			t.Fatalf("Put of a 4th key with a cap of 3 = %v, want ErrKVFull", err)
		}
		if _, found, _ := kv.Get(ctx, ns, "k4"); found {
			t.Fatal("the refused key was stored")
		}
		if err := kv.Put(ctx, ns, "k1", []byte(`2`), capped); err != nil {
			t.Fatalf("replacing a key in a full namespace: %v", err)
		}
		if got, _, _ := kv.Get(ctx, ns, "k1"); string(got) != "2" {
			t.Fatalf("k1 = %q after its replacement, want 2", got)
		}
		if err := kv.Put(ctx, "globex", "k4", []byte(`1`), capped); err != nil {
			t.Fatalf("another namespace has its own cap: %v", err)
		}
		if err := kv.Delete(ctx, ns, "k2"); err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, ns, "k2"); err != nil { // absent: must not count twice
			t.Fatal(err)
		}
		if err := kv.Put(ctx, ns, "k4", []byte(`1`), capped); err != nil {
			t.Fatalf("Put after a delete made room: %v", err)
		}
		if err := kv.Put(ctx, ns, "k5", []byte(`1`), capped); !errors.Is(err, store.ErrKVFull) {
			t.Fatalf("Put of a 4th key again = %v, want ErrKVFull: one delete made room for one key", err)
		}
		if err := kv.Put(ctx, ns, "k5", []byte(`1`), store.PutOptions{}); err != nil {
			t.Fatalf("a put without a cap is not refused: %v", err)
		}
	})

	t.Run("expired entries do not keep a namespace full", func(t *testing.T) {
		clock := NewManualClock()
		kv := newKV(t, clock)
		for _, k := range []string{"k1", "k2"} {
			if err := kv.Put(ctx, ns, k, []byte(`1`), store.PutOptions{TTL: time.Minute, MaxEntries: 2}); err != nil {
				t.Fatal(err)
			}
		}
		if err := kv.Put(ctx, ns, "k3", []byte(`1`), store.PutOptions{MaxEntries: 2}); !errors.Is(err, store.ErrKVFull) {
			t.Fatalf("Put into a full namespace = %v, want ErrKVFull", err)
		}
		clock.Advance(time.Minute)
		if err := kv.Put(ctx, ns, "k3", []byte(`1`), store.PutOptions{MaxEntries: 2}); err != nil {
			t.Fatalf("Put once the entries expired: %v", err)
		}
		if err := kv.Put(ctx, ns, "k4", []byte(`1`), store.PutOptions{MaxEntries: 2}); err != nil {
			t.Fatalf("Put of a second key once the entries expired: %v", err)
		}
		if err := kv.Put(ctx, ns, "k5", []byte(`1`), store.PutOptions{MaxEntries: 2}); !errors.Is(err, store.ErrKVFull) {
			t.Fatalf("Put of a third live key = %v, want ErrKVFull", err)
		}
	})

	t.Run("concurrent puts of new keys never pass the cap", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		var wg sync.WaitGroup
		var mu sync.Mutex
		stored, full := 0, 0
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := kv.Put(ctx, ns, fmt.Sprint("k", i), []byte(`1`), store.PutOptions{MaxEntries: 10})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					stored++
				case errors.Is(err, store.ErrKVFull):
					full++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if stored != 10 || full != 40 {
			t.Fatalf("%d puts stored and %d refused; want 10 and 40", stored, full)
		}
	})

	t.Run("concurrent writers and readers are safe", func(t *testing.T) {
		kv := newKV(t, NewManualClock())
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					key := fmt.Sprintf("k%d", i%5)
					_ = kv.Put(ctx, ns, key, []byte(fmt.Sprint(w)), store.PutOptions{})
					_, _, _ = kv.Get(ctx, ns, key)
					if i%7 == 0 {
						_ = kv.Delete(ctx, ns, key)
					}
				}
			}()
		}
		wg.Wait()
	})
}

func mustPut(t *testing.T, kv store.KV, ns, key string, v []byte, ttl time.Duration) {
	t.Helper()
	if err := kv.Put(context.Background(), ns, key, v, store.PutOptions{TTL: ttl}); err != nil {
		t.Fatalf("Put(%q, %q): %v", ns, key, err)
	}
}
