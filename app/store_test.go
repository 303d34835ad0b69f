package app

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
)

func TestAChangedStoreSectionNeedsARestart(t *testing.T) {
	base := config.Defaults()
	pgWith := func(dsn string) config.Server {
		s := config.Defaults()
		s.Store.Driver = config.StorePostgres
		s.Store.DSN.Secret = security.NewSecret(dsn)
		return s
	}
	tests := []struct {
		name     string
		old, cur config.Server
		restart  bool
	}{
		{"the same bbolt store reloads", base, config.Defaults(), false},
		{"the same postgres store reloads", pgWith("host=/a"), pgWith("host=/a"), false},
		{"bbolt to postgres needs a restart", base, pgWith("host=/a"), true},
		{"another dsn needs a restart", pgWith("host=/a"), pgWith("host=/b"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := slices.Contains(restartOnly(tc.old, tc.cur), "store"); got != tc.restart {
				t.Errorf("restart needed = %v, want %v (%q)", got, tc.restart, restartOnly(tc.old, tc.cur))
			}
		})
	}
}

func TestReadinessPingsTheDatabaseAtMostOnceASecond(t *testing.T) {
	var pings atomic.Int32
	down := errors.New("connection refused")
	var failing atomic.Bool
	ping := func(ctx context.Context) error {
		pings.Add(1)
		if failing.Load() {
			return down
		}
		return nil
	}
	var c readyCache
	t.Run("a hundred concurrent checks ping once", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if err := c.check(context.Background(), ping); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := pings.Load(); n != 1 {
			t.Fatalf("%d pings", n)
		}
	})
	t.Run("after a second the next check pings again and sees the database gone", func(t *testing.T) {
		failing.Store(true)
		time.Sleep(readyFor + 50*time.Millisecond)
		if err := c.check(context.Background(), ping); !errors.Is(err, down) {
			t.Fatalf("err = %v", err)
		}
		if n := pings.Load(); n != 2 {
			t.Fatalf("%d pings", n)
		}
	})
	t.Run("a caller that went away is not remembered as the database's answer", func(t *testing.T) {
		time.Sleep(readyFor + 50*time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = c.check(ctx, ping)
		failing.Store(false)
		if err := c.check(context.Background(), ping); err != nil {
			t.Fatalf("err = %v", err)
		}
	})
}

// sharedMemory is a memory store that says it is shared (it elects a leader), without
// LISTEN/NOTIFY: a Postgres reached through PgBouncer's transaction pooling.
type sharedMemory struct{ *memory.Store }

func (sharedMemory) TryLead(context.Context) (func(), <-chan struct{}, bool, error) {
	return func() {}, nil, true, nil
}

func TestWorkersPollASharedStoreThatSendsNoNotifications(t *testing.T) {
	count := func(st store.Store, within time.Duration) int {
		s := newLazyStore()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch := s.Notifications(ctx)
		s.publish(st)
		n := 0
		for end := time.After(within); ; {
			select {
			case <-ch:
				n++
			case <-end:
				return n
			}
		}
	}
	t.Run("a shared store is polled about every second after the nudge at open", func(t *testing.T) {
		if n := count(sharedMemory{memory.New(nil)}, 2*sharedPoll+sharedPoll/2); n < 3 {
			t.Fatalf("%d nudges in 2.5 polls, want the open one and at least 2 polls", n)
		}
	})
	t.Run("a store of one instance is nudged once, at open", func(t *testing.T) {
		if n := count(memory.New(nil), 2*sharedPoll); n != 1 {
			t.Fatalf("%d nudges, want 1", n)
		}
	})
}
