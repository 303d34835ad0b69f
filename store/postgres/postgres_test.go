package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/postgres"
	"github.com/pushbackd/pushbackd/store/storetest"
)

var env pgtest.Env

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &env)) }

// template is a database migrated once: each test's database is a copy of it.
type template struct {
	once sync.Once
	err  error
}

var migrated template

func newDB(t testing.TB) string {
	t.Helper()
	c := env.Need(t)
	migrated.once.Do(func() {
		dsn, err := c.CreateDatabase("migrated", "")
		if err != nil {
			migrated.err = err
			return
		}
		s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
		if err != nil {
			migrated.err = err
			return
		}
		migrated.err = s.Close()
	})
	if migrated.err != nil {
		t.Fatal(migrated.err)
	}
	return c.NewDatabase(t, "migrated")
}

func open(t testing.TB, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPostgresStore(t *testing.T) {
	storetest.TestStore(t, func(t *testing.T, clock store.Clock) store.Store {
		return open(t, newDB(t), postgres.Options{Clock: clock})
	})
}

func TestPostgresStoreUnbatched(t *testing.T) {
	storetest.TestStore(t, func(t *testing.T, clock store.Clock) store.Store {
		return open(t, newDB(t), postgres.Options{Clock: clock, MaxBatch: 1})
	})
}

// Two processes are two pools on one database: claims must never overlap and serialize_by
// order (commit order) must hold between them.
func TestTwoStoresShareTheQueue(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	stores := []*postgres.Store{a, b}
	const keys, perKey, loose = 4, 15, 60
	var want []string
	var mu sync.Mutex
	order := map[string][]string{} // serialize key -> ids in creation order
	var wg sync.WaitGroup
	for k := range keys {
		wg.Add(1)
		go func() { // each key's runs arrive in order, through both stores by turns
			defer wg.Done()
			for i := range perKey {
				r := &store.Run{Partner: "acme", Endpoint: "e", Mode: "async", SerializeKey: fmt.Sprintf("acme/loan-%d", k)}
				if _, err := stores[i%2].Create(ctx, r, store.CreateOptions{}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order[r.SerializeKey] = append(order[r.SerializeKey], r.ID)
				want = append(want, r.ID)
				mu.Unlock()
			}
		}()
	}
	for i := range loose {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &store.Run{Partner: "acme", Endpoint: "e", Mode: "async"}
			if _, err := stores[i%2].Create(ctx, r, store.CreateOptions{}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			want = append(want, r.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()

	claimed := map[string]int{}
	inflight := map[string]string{} // serialize key -> run executing
	seen := map[string][]string{}   // serialize key -> ids in claim order
	var workers sync.WaitGroup
	for w := range 6 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s := stores[w%2]
			owner := fmt.Sprintf("worker-%d", w)
			idle := 0
			for idle < 20 {
				res, err := s.Claim(ctx, owner, 3, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(res.Runs) == 0 {
					idle++
					time.Sleep(10 * time.Millisecond)
					continue
				}
				idle = 0
				for _, c := range res.Runs {
					k := c.Run.SerializeKey
					mu.Lock()
					claimed[c.Run.ID]++
					if k != "" {
						if other := inflight[k]; other != "" {
							t.Errorf("run %s of %s claimed while %s executes", c.Run.ID, k, other)
						}
						inflight[k] = c.Run.ID
						seen[k] = append(seen[k], c.Run.ID)
						delete(inflight, k) // before Save: the next cannot be claimed until it commits
					}
					mu.Unlock()
					c.Run.Status = store.StatusSucceeded
					if err := s.Save(ctx, c.Run, c.Lease); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	workers.Wait()
	for _, id := range want {
		if claimed[id] != 1 {
			t.Errorf("run %s claimed %d times, want once", id, claimed[id])
		}
	}
	for k, ids := range order {
		if !slices.Equal(seen[k], ids) {
			t.Errorf("serialize key %s: claimed in order %v, want arrival order %v", k, seen[k], ids)
		}
	}
	if n, _ := a.Runnable(ctx); n != 0 {
		t.Errorf("Runnable = %d after every run finished", n)
	}
}

func TestLeaderElection(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})

	t.Run("one store leads and the other takes over when it closes", func(t *testing.T) {
		_, _, ok, err := a.TryLead(ctx)
		if err != nil || !ok {
			t.Fatalf("first TryLead = %v, %v; want to lead", ok, err)
		}
		if _, _, ok, err := b.TryLead(ctx); err != nil || ok {
			t.Fatalf("second TryLead while the first leads = %v, %v; want false", ok, err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		release, _, ok, err := b.TryLead(ctx)
		if err != nil || !ok {
			t.Fatalf("TryLead after the leader closed = %v, %v; want to lead", ok, err)
		}
		release()
	})

	t.Run("a leader whose connection dies loses the lead and another takes it", func(t *testing.T) {
		c := open(t, dsn, postgres.Options{})
		_, lost, ok, err := b.TryLead(ctx)
		if err != nil || !ok {
			t.Fatalf("TryLead = %v, %v", ok, err)
		}
		// Kill the leader's session, as a crash of its process would end it.
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted`); err != nil {
			t.Fatal(err)
		}
		select {
		case <-lost:
		case <-time.After(10 * time.Second):
			t.Fatal("the leader did not notice its lock's session ended")
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			release, _, ok, err := c.TryLead(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				release()
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no store could lead after the leader died")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func TestMigrationsAppliedConcurrently(t *testing.T) {
	c := env.Need(t)
	dsn := c.NewDatabase(t, "") // empty: every Open races to migrate it
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var applied int
	var version int64
	if err := conn.QueryRow(context.Background(), `SELECT count(*), max(version_id) FROM pushbackd_schema_version
		WHERE version_id > 0`).Scan(&applied, &version); err != nil {
		t.Fatal(err)
	}
	if version != postgres.SchemaVersion() || applied != int(postgres.SchemaVersion()) {
		t.Errorf("schema at %d with %d migrations applied; want %d, each once", version, applied, postgres.SchemaVersion())
	}
}

func TestServerDownIsUnavailable(t *testing.T) {
	ctx := context.Background()
	c := env.Need(t)
	s := open(t, newDB(t), postgres.Options{})
	if _, err := s.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e"}, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() {
		if !started {
			_ = c.StartServer()
		}
	}()
	checks := []struct {
		name string
		call func() error
	}{
		{"create", func() error {
			_, err := s.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e"}, store.CreateOptions{})
			return err
		}},
		{"claim", func() error { _, err := s.Claim(ctx, "w", 1, time.Minute); return err }},
		{"list", func() error { _, _, err := s.List(ctx, store.Filter{}); return err }},
		{"kv put", func() error { return s.Put(ctx, "acme", "k", []byte(`1`), store.PutOptions{}) }},
	}
	for _, c := range checks {
		t.Run(c.name+" while the server is down is ErrUnavailable", func(t *testing.T) {
			if err := c.call(); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
		})
	}
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	started = true
	t.Run("the store works again once the server is back, without reopening", func(t *testing.T) {
		if err := checks[0].call(); err != nil {
			t.Fatal(err)
		}
	})
}

// Senders choose keys: any bytes, including NUL and invalid UTF-8, which a text column
// would refuse.
func TestHostileKeyBytes(t *testing.T) {
	ctx := context.Background()
	s := open(t, newDB(t), postgres.Options{})
	nul := "acme//e/\x00nul"
	if _, err := s.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: nul, SerializeKey: nul}, store.CreateOptions{}); err != nil {
		t.Fatalf("create with a NUL in its keys: %v", err)
	}
	if res, err := s.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: nul}, store.CreateOptions{}); err != nil || res.DuplicateOf == "" {
		t.Fatalf("a NUL key's duplicate = %+v, %v; want DuplicateOf", res, err)
	}
	key := "acme//e/\xff\xfe evil"
	first := &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: key, DebounceKey: key, SerializeKey: key}
	if _, err := s.Create(ctx, first, store.CreateOptions{}); err != nil {
		t.Fatalf("create with a binary key: %v", err)
	}
	res, err := s.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: key}, store.CreateOptions{})
	if err != nil || res.DuplicateOf != first.ID {
		t.Fatalf("duplicate = %+v, %v; want DuplicateOf %s", res, err, first.ID)
	}
	if err := s.Put(ctx, "acme", "\xff\x00", []byte(`1`), store.PutOptions{}); err != nil {
		t.Fatalf("kv put with a binary key: %v", err)
	}
	if v, ok, err := s.Get(ctx, "acme", "\xff\x00"); err != nil || !ok || string(v) != "1" {
		t.Fatalf("kv get = %q, %v, %v", v, ok, err)
	}
	runs, _, err := s.List(ctx, store.Filter{IdempotencyKey: key, Partner: "\xff"})
	if err != nil || len(runs) != 0 {
		t.Fatalf("list by a partner no run has = %d runs, %v", len(runs), err)
	}
	runs, _, err = s.List(ctx, store.Filter{IdempotencyKey: key})
	if err != nil || len(runs) != 1 {
		t.Fatalf("list by the binary key = %d runs, %v; want 1", len(runs), err)
	}
}

func TestNotificationsAcrossStores(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsn := newDB(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	ch := a.Notifications(ctx)
	// LISTEN runs on its own goroutine: create until a nudge comes.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			cancel()
			for range ch { // closes once ctx ends
			}
			return
		case <-tick.C:
			if _, err := b.Create(ctx, &store.Run{Partner: "acme", Endpoint: "e"}, store.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("no notification reached the other store after its creates")
		}
	}
}

// Concurrent creates share a transaction; one that fails must fail alone.
func TestABadCreateInABatchFailsAlone(t *testing.T) {
	ctx := context.Background()
	s := open(t, newDB(t), postgres.Options{})
	taken := &store.Run{Partner: "acme", Endpoint: "e"}
	if _, err := s.Create(ctx, taken, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, 20)
		runs := make([]*store.Run, 20)
		for i := range errs {
			runs[i] = &store.Run{Partner: "acme", Endpoint: "e", IdempotencyKey: fmt.Sprintf("acme//e/%d-%d", round, i)}
			if i == 7 {
				runs[i].ID = taken.ID // exists: ErrInvalid
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Create(ctx, runs[i], store.CreateOptions{})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if i == 7 {
				if !errors.Is(err, store.ErrInvalid) {
					t.Errorf("create with a taken id = %v, want ErrInvalid", err)
				}
				continue
			}
			if err != nil {
				t.Errorf("create %d beside a bad one: %v", i, err)
				continue
			}
			if _, err := s.GetRun(ctx, runs[i].ID); err != nil {
				t.Errorf("run %d not stored: %v", i, err)
			}
		}
	}
}

// Debounced bursts sent to two instances at once leave one run per key to execute.
func TestDebounceHoldsAcrossStores(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	// One commit per create: the most interleaving between the two stores' transactions.
	stores := []*postgres.Store{open(t, dsn, postgres.Options{MaxBatch: 1}), open(t, dsn, postgres.Options{MaxBatch: 1})}
	const keys, burst = 10, 30
	var wg sync.WaitGroup
	for i := range keys * burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &store.Run{Partner: "acme", Endpoint: "e", DebounceKey: fmt.Sprintf("acme//e/loan/L-%d", i%keys),
				Status: store.StatusWaiting, WakeAt: time.Now().Add(time.Minute)}
			if _, err := stores[i%2].Create(ctx, r, store.CreateOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	live, err := stores[0].Unfinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perKey := map[string]int{}
	for _, r := range live {
		perKey[r.DebounceKey]++
	}
	for k, n := range perKey {
		if n != 1 {
			t.Errorf("debounce key %s: %d unfinished runs after a burst through two stores, want 1", k, n)
		}
	}
	if len(perKey) != keys {
		t.Errorf("%d keys have an unfinished run, want %d", len(perKey), keys)
	}
}
