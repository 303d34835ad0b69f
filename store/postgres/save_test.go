package postgres_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/postgres"
)

// claimed creates n plain runs (serialize_by key when key is set) in a store on dsn and
// claims what is due, returning the runs under their leases.
func claimed(t *testing.T, s *postgres.Store, n int, key string) ([]*store.Run, []store.Lease) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		r := plainRun(i)
		r.SerializeKey = key
		if _, err := s.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Claim(ctx, "w1", n, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var runs []*store.Run
	var leases []store.Lease
	for _, c := range res.Runs {
		runs, leases = append(runs, c.Run), append(leases, c.Lease)
	}
	return runs, leases
}

func finish(runs []*store.Run) {
	for _, r := range runs {
		r.Status, r.Result = store.StatusSucceeded, []byte(`{"ok":true}`)
	}
}

// TestSaveBatch drives one batch of the save batcher: the workers' saves, one per async
// run, commit together in one transaction, each still fenced by its own lease.
func TestSaveBatch(t *testing.T) {
	ctx := context.Background()
	t.Run("fifty saves commit in one transaction of five round trips, where alone they take fifty commits", func(t *testing.T) {
		for _, alone := range []bool{false, true} {
			dsn := newDB(t)
			s := open(t, dsn, postgres.Options{})
			runs, leases := claimed(t, s, 50, "")
			if len(runs) != 50 {
				t.Fatalf("claimed %d runs; want 50", len(runs))
			}
			finish(runs)
			errs, trips, commits, err := postgres.SaveBatch(ctx, dsn, runs, leases, alone)
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("save %d: %v", i, err)
				}
			}
			t.Logf("alone %v: %d round trips, %d commits for 50 saves", alone, trips, commits)
			// begin; the serialize_by keys of the runs that end (none to lock here); the
			// rows, locked; the writes, pipelined; commit.
			if !alone && (trips > 5 || commits != 1) {
				t.Errorf("the batch made %d round trips and %d commits for 50 saves; want at most 5 and 1", trips, commits)
			}
			if alone && commits != 50 {
				t.Errorf("alone: %d commits for 50 saves; want 50", commits)
			}
			for i, r := range runs {
				got, err := s.GetRun(ctx, r.ID)
				if err != nil || got.Status != store.StatusSucceeded || string(got.Result) != `{"ok":true}` || r.FinishedAt.IsZero() {
					t.Fatalf("run %d: %+v, %v (reported finished %v); want it stored succeeded with its result", i, got, err, r.FinishedAt)
				}
			}
		}
	})
	t.Run("a save whose lease was lost fails alone with ErrLeaseLost and the others commit", func(t *testing.T) {
		dsn := newDB(t)
		s := open(t, dsn, postgres.Options{})
		runs, leases := claimed(t, s, 3, "")
		finish(runs)
		leases[1].Token++ // another claim took it since
		errs, _, _, err := postgres.SaveBatch(ctx, dsn, runs, leases, false)
		if err != nil {
			t.Fatal(err)
		}
		if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], store.ErrLeaseLost) {
			t.Fatalf("errors %v; want nil, ErrLeaseLost, nil", errs)
		}
		for i, want := range []store.Status{store.StatusSucceeded, store.StatusRunning, store.StatusSucceeded} {
			if got, err := s.GetRun(ctx, runs[i].ID); err != nil || got.Status != want {
				t.Fatalf("run %d: %+v, %v; want %s", i, got, err, want)
			}
		}
	})
	t.Run("a save that ends a serialize_by run unparks the next run of its key", func(t *testing.T) {
		dsn := newDB(t)
		s := open(t, dsn, postgres.Options{})
		runs, leases := claimed(t, s, 2, "acme/loan-1")
		if len(runs) != 1 {
			t.Fatalf("claimed %d runs of one serialize_by key; want 1 (the second parked)", len(runs))
		}
		other, otherLeases := claimed(t, s, 1, "")
		runs, leases = append(runs, other...), append(leases, otherLeases...)
		finish(runs)
		errs, _, _, err := postgres.SaveBatch(ctx, dsn, runs, leases, false)
		if err != nil || errs[0] != nil || errs[1] != nil {
			t.Fatalf("%v %v", err, errs)
		}
		res, err := s.Claim(ctx, "w2", 10, time.Minute)
		if err != nil || len(res.Runs) != 1 || res.Runs[0].Run.SerializeKey != "acme/loan-1" {
			t.Fatalf("claim after the save: %+v, %v; want the unparked second run of the key", res.Runs, err)
		}
	})
	t.Run("a save reports the cancel requested while the worker ran", func(t *testing.T) {
		dsn := newDB(t)
		s := open(t, dsn, postgres.Options{})
		runs, leases := claimed(t, s, 2, "")
		if _, err := s.Cancel(ctx, runs[0].ID); err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			r.State = []byte(`{"step":2}`) // still running, one step further
		}
		errs, _, _, err := postgres.SaveBatch(ctx, dsn, runs, leases, false)
		if err != nil || errs[0] != nil || errs[1] != nil {
			t.Fatalf("%v %v", err, errs)
		}
		if !runs[0].CancelRequested || runs[1].CancelRequested {
			t.Fatalf("cancel requested reported %v, %v; want true for the cancelled run only",
				runs[0].CancelRequested, runs[1].CancelRequested)
		}
	})
	t.Run("two saves of one run in one batch both commit, in order", func(t *testing.T) {
		dsn := newDB(t)
		s := open(t, dsn, postgres.Options{})
		runs, leases := claimed(t, s, 1, "")
		step := *runs[0]
		step.State = []byte(`{"step":2}`)
		last := *runs[0]
		last.Status, last.Result = store.StatusSucceeded, []byte(`{"ok":true}`)
		errs, _, _, err := postgres.SaveBatch(ctx, dsn, []*store.Run{&step, &last}, []store.Lease{leases[0], leases[0]}, false)
		if err != nil || errs[0] != nil || errs[1] != nil {
			t.Fatalf("%v %v", err, errs)
		}
		if got, err := s.GetRun(ctx, runs[0].ID); err != nil || got.Status != store.StatusSucceeded {
			t.Fatalf("run: %+v, %v; want the second save's succeeded", got, err)
		}
	})
	t.Run("a save the database rejects fails alone: the batch is committed again one save at a time", func(t *testing.T) {
		dsn := newDB(t)
		s := open(t, dsn, postgres.Options{})
		runs, leases := claimed(t, s, 4, "")
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		bad, _ := store.ParseRunID(runs[2].ID)
		if _, err := conn.Exec(ctx, `CREATE FUNCTION reject_final() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF NEW.final AND NEW.id = '\x`+hex.EncodeToString(bad[:])+`'::bytea THEN RAISE EXCEPTION 'rejected run'; END IF;
			RETURN NEW; END $$;
			CREATE TRIGGER reject_final BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION reject_final()`); err != nil {
			t.Fatal(err)
		}
		finish(runs)
		errs, _, _, err := postgres.SaveBatch(ctx, dsn, runs, leases, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range runs {
			got, gerr := s.GetRun(ctx, r.ID)
			if i == 2 {
				if errs[i] == nil || !strings.Contains(errs[i].Error(), "rejected run") || gerr != nil || got.Status != store.StatusRunning {
					t.Fatalf("the rejected save: %v, stored %+v; want the database's error and the run unchanged", errs[i], got)
				}
				continue
			}
			if errs[i] != nil || gerr != nil || got.Status != store.StatusSucceeded {
				t.Fatalf("save %d beside the rejected one: %v, stored %+v, %v", i, errs[i], got, gerr)
			}
		}
	})
}

// Renewing the leases of executing runs while their workers save them must not deadlock.
// Renew locked the rows in its caller's order (the dispatcher's, a map's) and the save
// batch in id order, and each deadlock held every save of those runs for deadlock_timeout
// (1 s) until Postgres broke it: in the bench, no worker freed up for a second, accepts
// queued at once, and the queue filled.
func TestRenewAndSavesOfTheSameRunsDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	s := open(t, newDB(t), postgres.Options{})
	runs, leases := claimed(t, s, 64, "")
	if len(runs) != 64 {
		t.Fatalf("claimed %d runs; want 64", len(runs))
	}
	reversed := slices.Clone(leases)
	slices.Reverse(reversed) // against the save batch's id order
	var mu sync.Mutex
	var slowest time.Duration
	timed := func(what string, op func() error) {
		start := time.Now()
		err := op()
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		slowest = max(slowest, took)
	}
	for range 20 {
		var wg sync.WaitGroup
		wg.Go(func() {
			timed("renew", func() error {
				lost, err := s.Renew(ctx, reversed, time.Minute)
				if err == nil && len(lost) > 0 {
					err = fmt.Errorf("lost %d leases", len(lost))
				}
				return err
			})
		})
		for i, r := range runs {
			wg.Go(func() {
				cp := *r
				cp.State = []byte(`{"step":1}`)
				timed("save", func() error { return s.Save(ctx, &cp, leases[i]) })
			})
		}
		wg.Wait()
	}
	t.Logf("slowest renew or save: %v", slowest)
	if slowest >= 800*time.Millisecond {
		t.Errorf("the slowest renew or save took %v; a deadlock holds its transactions for deadlock_timeout (1 s)", slowest)
	}
}
