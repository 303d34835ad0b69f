package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/postgres"
)

func plainRun(i int) *store.Run {
	return &store.Run{Partner: "acme", Endpoint: "e", Mode: "async", Status: store.StatusQueued,
		Request: store.Request{Body: fmt.Appendf(nil, `{"loan":"%d"}`, i)}}
}

// TestCreateBatch drives one batch of the create batcher: plain creates (no keys to claim
// or look up) go into one multi-row INSERT, and each still succeeds or fails alone.
func TestCreateBatch(t *testing.T) {
	ctx := context.Background()
	t.Run("fifty plain creates commit in four round trips in all, not several per create", func(t *testing.T) {
		dsn := newDB(t)
		runs := make([]*store.Run, 50)
		opts := make([]store.CreateOptions, 50)
		for i := range runs {
			runs[i], opts[i] = plainRun(i), store.CreateOptions{MaxRunnable: 10000}
		}
		_, errs, trips, err := postgres.CreateBatch(ctx, dsn, runs, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("create %d: %v", i, err)
			}
		}
		// begin; the runnable lock and one count, pipelined; the insert and the notify,
		// pipelined; commit.
		if trips > 4 {
			t.Errorf("the batch made %d round trips for 50 creates; want at most 4", trips)
		}
		s := open(t, dsn, postgres.Options{})
		for i, r := range runs {
			got, err := s.GetRun(ctx, r.ID)
			if err != nil || got.Status != store.StatusQueued || string(got.Request.Body) != fmt.Sprintf(`{"loan":"%d"}`, i) {
				t.Fatalf("run %d: %+v, %v; want it stored, queued, with its body", i, got, err)
			}
		}
	})
	t.Run("a create whose id is already stored fails alone and the others commit", func(t *testing.T) {
		dsn := newDB(t)
		s := open(t, dsn, postgres.Options{})
		first := plainRun(0)
		if _, err := s.Create(ctx, first, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		again := plainRun(1)
		again.ID = first.ID
		runs := []*store.Run{plainRun(2), again, plainRun(3)}
		_, errs, _, err := postgres.CreateBatch(ctx, dsn, runs, make([]store.CreateOptions, 3))
		if err != nil {
			t.Fatal(err)
		}
		if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], store.ErrInvalid) {
			t.Fatalf("errors %v; want nil, ErrInvalid, nil", errs)
		}
		for _, r := range []*store.Run{runs[0], runs[2]} {
			if _, err := s.GetRun(ctx, r.ID); err != nil {
				t.Fatalf("run %s of the same batch: %v", r.ID, err)
			}
		}
		if got, err := s.GetRun(ctx, first.ID); err != nil || string(got.Request.Body) != `{"loan":"0"}` {
			t.Fatalf("the stored run was changed: %+v, %v", got, err)
		}
	})
	t.Run("past MaxRunnable each further create is refused with ErrFull, the earlier ones stored", func(t *testing.T) {
		dsn := newDB(t)
		runs := make([]*store.Run, 5)
		opts := make([]store.CreateOptions, 5)
		for i := range runs {
			runs[i], opts[i] = plainRun(i), store.CreateOptions{MaxRunnable: 3}
		}
		_, errs, _, err := postgres.CreateBatch(ctx, dsn, runs, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			if full := errors.Is(err, store.ErrFull); full != (i >= 3) || (!full && err != nil) {
				t.Fatalf("create %d: %v; want the first 3 stored and the rest ErrFull", i, err)
			}
		}
	})
	t.Run("a create with an owner is stored running under a lease, in the same insert", func(t *testing.T) {
		dsn := newDB(t)
		runs := []*store.Run{plainRun(0), plainRun(1)}
		opts := []store.CreateOptions{{Owner: "w1", LeaseTTL: time.Minute, MaxRunnable: 1}, {MaxRunnable: 1}}
		res, errs, _, err := postgres.CreateBatch(ctx, dsn, runs, opts)
		if err != nil || errs[0] != nil || errs[1] != nil {
			t.Fatalf("%v %v", err, errs)
		}
		if res[0].Lease == nil || res[0].Lease.Owner != "w1" || res[1].Lease != nil {
			t.Fatalf("leases %+v, %+v; want one for w1 on the first run only", res[0].Lease, res[1].Lease)
		}
		s := open(t, dsn, postgres.Options{})
		got, err := s.GetRun(ctx, runs[0].ID)
		if err != nil || got.Status != store.StatusRunning {
			t.Fatalf("owned run: %+v, %v; want running", got, err)
		}
		if n, err := s.Runnable(ctx); err != nil || n != 1 {
			t.Fatalf("runnable = %d, %v; want 1 (the running run does not count toward MaxRunnable)", n, err)
		}
	})
	t.Run("a plain create the database rejects fails alone: the multi-row insert is redone one create at a time", func(t *testing.T) {
		dsn := newDB(t)
		// A trigger that rejects one partner's rows fails the multi-row insert as a whole,
		// as a row the database refuses would.
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `CREATE FUNCTION reject_evil() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.partner = 'evil'::bytea THEN RAISE EXCEPTION 'evil partner'; END IF; RETURN NEW; END $$;
			CREATE TRIGGER reject_evil BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION reject_evil()`); err != nil {
			t.Fatal(err)
		}
		runs := make([]*store.Run, 5)
		opts := make([]store.CreateOptions, 5)
		for i := range runs {
			runs[i], opts[i] = plainRun(i), store.CreateOptions{MaxRunnable: 10}
		}
		runs[2].Partner = "evil"
		_, errs, _, err := postgres.CreateBatch(ctx, dsn, runs, opts)
		if err != nil {
			t.Fatal(err)
		}
		s := open(t, dsn, postgres.Options{})
		for i, r := range runs {
			if i == 2 {
				if errs[i] == nil || !strings.Contains(errs[i].Error(), "evil partner") {
					t.Fatalf("the rejected create: %v; want the database's error", errs[i])
				}
				continue
			}
			if errs[i] != nil {
				t.Fatalf("create %d beside the rejected one: %v", i, errs[i])
			}
			if _, err := s.GetRun(ctx, r.ID); err != nil {
				t.Fatalf("run %d not stored: %v", i, err)
			}
		}
		if n, err := s.Runnable(ctx); err != nil || n != 4 {
			t.Fatalf("runnable = %d, %v; want the 4 stored runs", n, err)
		}
	})
	t.Run("creates with the same idempotency key in one batch: the second is the first's duplicate", func(t *testing.T) {
		dsn := newDB(t)
		a, b := plainRun(0), plainRun(1)
		a.IdempotencyKey, b.IdempotencyKey = "acme//e/k1", "acme//e/k1"
		runs := []*store.Run{a, plainRun(2), b}
		res, errs, _, err := postgres.CreateBatch(ctx, dsn, runs, make([]store.CreateOptions, 3))
		if err != nil || errs[0] != nil || errs[1] != nil || errs[2] != nil {
			t.Fatalf("%v %v", err, errs)
		}
		if res[2].DuplicateOf != a.ID || res[0].DuplicateOf != "" || res[1].DuplicateOf != "" {
			t.Fatalf("duplicates %q %q %q; want only the third to be the first's", res[0].DuplicateOf, res[1].DuplicateOf, res[2].DuplicateOf)
		}
	})
}

// TestRunnableCount: the count of queued or waiting runs that limits.queue bounds is kept
// by triggers as rows of changes, exact through creates, claims, releases, supersedes and
// prunes, and folded so a create's check reads a bounded number of rows however long the
// queue grows (it used to count the queue: 11 ms a batch at 40,000 queued runs).
func TestRunnableCount(t *testing.T) {
	ctx := context.Background()
	dsn := newDB(t)
	s := open(t, dsn, postgres.Options{})
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	check := func(t *testing.T) {
		t.Helper()
		var want, rows int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM runs WHERE status IN ('queued', 'waiting')").Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Runnable(ctx); err != nil || got != want {
			t.Fatalf("runnable = %d, %v; want %d, the queued and waiting runs", got, err, want)
		}
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM runnable_deltas").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows > 1200 {
			t.Fatalf("the count is %d rows of changes; want them folded past 1000", rows)
		}
	}
	createMany := func(t *testing.T, n int, mk func(i int) *store.Run) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if _, err := s.Create(ctx, mk(i), store.CreateOptions{MaxRunnable: 100000}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	t.Run("2,500 creates leave the count exact and folded", func(t *testing.T) {
		createMany(t, 2500, plainRun)
		check(t)
	})
	t.Run("claims take runs off the count and a release puts one back", func(t *testing.T) {
		res, err := s.Claim(ctx, "w1", 20, time.Minute)
		if err != nil || len(res.Runs) != 20 {
			t.Fatalf("claimed %d, %v; want 20", len(res.Runs), err)
		}
		check(t)
		if err := s.Release(ctx, res.Runs[0].Lease); err != nil {
			t.Fatal(err)
		}
		check(t)
	})
	t.Run("debounced creates supersede the waiting runs before them", func(t *testing.T) {
		createMany(t, 30, func(i int) *store.Run {
			return &store.Run{Partner: "acme", Endpoint: "e", DebounceKey: fmt.Sprintf("acme//e/L-%d", i%3),
				Status: store.StatusWaiting, WakeAt: time.Now().Add(time.Hour)}
		})
		check(t)
	})
	t.Run("a prune of finished runs leaves the count", func(t *testing.T) {
		if _, err := s.Prune(ctx, time.Now().Add(time.Hour), 0); err != nil {
			t.Fatal(err)
		}
		check(t)
	})
}
