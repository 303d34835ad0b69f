package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

const ttl = time.Minute

// TestQueue runs the work-queue contract (claims, leases, fencing, due order, serialize_by
// and debounce) against fresh stores from newStore.
func TestQueue(t *testing.T, newStore func(t *testing.T, clock store.Clock) store.Store) {
	ctx := context.Background()

	t.Run("a queued run is claimed once, whole, under a lease", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := sampleRun("acme", "", "e")
		mustCreate(t, s, r)
		assertRunnable(t, s, 1)
		got := mustClaim(t, s, "w1", 10)
		if len(got.Runs) != 1 {
			t.Fatalf("claimed %d runs, want 1", len(got.Runs))
		}
		c := got.Runs[0]
		if c.Run.ID != r.ID || c.Run.Status != store.StatusRunning || c.Run.Attempt != 1 || string(c.Run.Request.Body) != string(r.Request.Body) {
			t.Fatalf("claimed %s %s attempt %d body %q", c.Run.ID, c.Run.Status, c.Run.Attempt, c.Run.Request.Body)
		}
		if c.Lease.RunID != r.ID || c.Lease.Owner != "w1" || c.Lease.Token == 0 || !c.Lease.Expires.Equal(clock.Now().Add(ttl)) {
			t.Fatalf("lease %+v", c.Lease)
		}
		if !got.Next.Equal(c.Lease.Expires) {
			t.Errorf("Next = %v, want the lease's expiry %v: the held run is due then, for its rescue", got.Next, c.Lease.Expires)
		}
		stored, _ := s.GetRun(ctx, r.ID)
		if stored.Status != store.StatusRunning || stored.Attempt != 1 {
			t.Errorf("stored %s attempt %d, want running attempt 1", stored.Status, stored.Attempt)
		}
		if again := mustClaim(t, s, "w2", 10); len(again.Runs) != 0 {
			t.Fatalf("a held run was claimed again: %v", claimedIDs(again))
		}
		assertRunnable(t, s, 0)
	})

	t.Run("due runs are claimed earliest first and the rest wait for their time", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		late := createWaiting(t, s, "late", clock.Now().Add(time.Hour))
		clock.Advance(time.Second)
		q1 := createQueued(t, s, "q1")
		woken := createWaiting(t, s, "woken", clock.Now().Add(10*time.Second))
		clock.Advance(time.Second)
		q2 := createQueued(t, s, "q2")
		clock.Advance(10 * time.Second) // woken is due, 9s after q2 arrived
		q3 := createQueued(t, s, "q3")

		first := mustClaim(t, s, "w", 2)
		if got, want := claimedIDs(first), []string{q1.ID, q2.ID}; !slices.Equal(got, want) {
			t.Fatalf("first claim %v, want the oldest two %v", got, want)
		}
		if !first.Next.Equal(woken.WakeAt) {
			t.Errorf("Next = %v, want %v: a due run is left", first.Next, woken.WakeAt)
		}
		second := mustClaim(t, s, "w", 10)
		if got, want := claimedIDs(second), []string{woken.ID, q3.ID}; !slices.Equal(got, want) {
			t.Fatalf("second claim %v, want %v (woken is due before q3 arrived)", got, want)
		}
		if want := clock.Now().Add(ttl); !second.Next.Equal(want) {
			t.Errorf("Next = %v, want the first lease's expiry %v", second.Next, want)
		}
		for _, c := range append(first.Runs, second.Runs...) {
			finish(t, s, c)
		}
		if got := mustClaim(t, s, "w", 10); len(got.Runs) != 0 || !got.Next.Equal(late.WakeAt) {
			t.Errorf("claimed %v, Next = %v; want nothing until the late run's wake time %v", claimedIDs(got), got.Next, late.WakeAt)
		}
		clock.Advance(time.Hour)
		third := mustClaim(t, s, "w", 10)
		if got := claimedIDs(third); !slices.Equal(got, []string{late.ID}) {
			t.Fatalf("third claim %v, want %s at its wake time", got, late.ID)
		}
		// A debounced run that never ran starts its first attempt when woken.
		if third.Runs[0].Run.Attempt != 1 {
			t.Errorf("woken debounce run has attempt %d, want 1", third.Runs[0].Run.Attempt)
		}
	})

	t.Run("an expired lease lets another worker take the run and fences the first one out", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := createQueued(t, s, "r")
		first := mustClaim(t, s, "w1", 1).Runs[0]
		clock.Advance(ttl - time.Second)
		if got := mustClaim(t, s, "w2", 1); len(got.Runs) != 0 {
			t.Fatal("a run was taken before its lease expired")
		}
		clock.Advance(time.Second)
		second := mustClaim(t, s, "w2", 1)
		if len(second.Runs) != 1 || second.Runs[0].Run.ID != r.ID {
			t.Fatalf("the expired run was not rescued: %v", claimedIDs(second))
		}
		taken := second.Runs[0]
		if taken.Lease.Token <= first.Lease.Token || taken.Run.Attempt != 2 {
			t.Fatalf("rescued with token %d after %d, attempt %d; want a larger token and attempt 2", taken.Lease.Token, first.Lease.Token, taken.Run.Attempt)
		}
		stale := *first.Run
		stale.State, stale.Status = []byte(`{"stale":true}`), store.StatusRunning
		if err := s.Save(ctx, &stale, first.Lease); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("checkpoint by the worker that lost its lease = %v, want ErrLeaseLost", err)
		}
		stale.Status = store.StatusSucceeded
		if err := s.Save(ctx, &stale, first.Lease); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("outcome by the worker that lost its lease = %v, want ErrLeaseLost", err)
		}
		if err := s.Release(ctx, first.Lease); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("release by the worker that lost its lease = %v, want ErrLeaseLost", err)
		}
		if lost, err := s.Renew(ctx, []store.Lease{first.Lease, taken.Lease}, ttl); err != nil || !slices.Equal(lost, []string{r.ID}) {
			t.Fatalf("Renew = %v, %v; want only the stale lease lost", lost, err)
		}
		got, _ := s.GetRun(ctx, r.ID)
		if got.Status != store.StatusRunning || got.State != nil {
			t.Fatalf("the stale writes reached the run: %s %q", got.Status, got.State)
		}
		done := *taken.Run
		done.Status, done.Result = store.StatusSucceeded, []byte(`{"ok":true}`)
		if err := s.Save(ctx, &done, taken.Lease); err != nil {
			t.Fatalf("the holder's outcome: %v", err)
		}
		if got, _ := s.GetRun(ctx, r.ID); got.Status != store.StatusSucceeded || string(got.Result) != `{"ok":true}` {
			t.Fatalf("stored %s %q", got.Status, got.Result)
		}
	})

	t.Run("a renewed lease keeps the run past its first expiry", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		createQueued(t, s, "r")
		c := mustClaim(t, s, "w1", 1).Runs[0]
		for range 3 {
			clock.Advance(ttl / 2)
			if lost, err := s.Renew(ctx, []store.Lease{c.Lease}, ttl); err != nil || len(lost) != 0 {
				t.Fatalf("Renew = %v, %v", lost, err)
			}
		}
		if got := mustClaim(t, s, "w2", 1); len(got.Runs) != 0 {
			t.Fatal("a renewed lease was taken")
		}
		cp := *c.Run
		cp.State = []byte(`{"next":1}`)
		if err := s.Save(ctx, &cp, c.Lease); err != nil {
			t.Fatalf("a checkpoint after renewals: %v", err)
		}
		clock.Advance(ttl)
		if got := mustClaim(t, s, "w2", 1); len(got.Runs) != 1 || got.Runs[0].Run.Attempt != 2 || string(got.Runs[0].Run.State) != `{"next":1}` {
			t.Fatalf("once the renewals stop the run is rescued from its checkpoint: %+v", got.Runs)
		}
	})

	t.Run("a suspended run frees its worker and is claimed again at its wake time with its attempt", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := createQueued(t, s, "r")
		c := mustClaim(t, s, "w1", 1).Runs[0]
		sus := *c.Run
		sus.Status, sus.WakeAt, sus.State = store.StatusWaiting, clock.Now().Add(30*time.Second), []byte(`{"wait":30}`)
		if err := s.Save(ctx, &sus, c.Lease); err != nil {
			t.Fatal(err)
		}
		assertRunnable(t, s, 1)
		if err := s.Save(ctx, &sus, c.Lease); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("a write after suspending = %v, want ErrLeaseLost: the suspension released the lease", err)
		}
		got := mustClaim(t, s, "w2", 1)
		if len(got.Runs) != 0 || !got.Next.Equal(sus.WakeAt) {
			t.Fatalf("before its wake time: claimed %v, next %v; want nothing until %v", claimedIDs(got), got.Next, sus.WakeAt)
		}
		clock.Advance(30 * time.Second)
		got = mustClaim(t, s, "w2", 1)
		if len(got.Runs) != 1 || got.Runs[0].Run.ID != r.ID {
			t.Fatalf("at its wake time: %v", claimedIDs(got))
		}
		woken := got.Runs[0]
		if woken.Run.Attempt != 1 || string(woken.Run.State) != `{"wait":30}` || !woken.Run.WakeAt.IsZero() || woken.Lease.Token <= c.Lease.Token {
			t.Fatalf("woken run: attempt %d state %q wake %v token %d", woken.Run.Attempt, woken.Run.State, woken.Run.WakeAt, woken.Lease.Token)
		}
		assertRunnable(t, s, 0)
	})

	t.Run("a finished run is released for good", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		createQueued(t, s, "r")
		c := mustClaim(t, s, "w1", 1).Runs[0]
		done := *c.Run
		done.Status = store.StatusFailed
		if err := s.Save(ctx, &done, c.Lease); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * ttl)
		if got := mustClaim(t, s, "w2", 1); len(got.Runs) != 0 || !got.Next.IsZero() {
			t.Fatalf("a final run was claimed: %v next %v", claimedIDs(got), got.Next)
		}
		done.Status = store.StatusRunning
		if err := s.Save(ctx, &done, c.Lease); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("reviving a final run = %v, want ErrLeaseLost", err)
		}
		assertRunnable(t, s, 0)
	})

	t.Run("a released run is due at once and resumes as a new attempt", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		createQueued(t, s, "r")
		c := mustClaim(t, s, "w1", 1).Runs[0]
		if err := s.Release(ctx, c.Lease); err != nil {
			t.Fatal(err)
		}
		got := mustClaim(t, s, "w2", 1)
		if len(got.Runs) != 1 || got.Runs[0].Run.Attempt != 2 {
			t.Fatalf("after a release: %+v", got.Runs)
		}
	})

	t.Run("a worker cannot put a run back in the queue or save with another run's lease", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		createQueued(t, s, "a")
		createQueued(t, s, "b")
		cs := mustClaim(t, s, "w", 2).Runs
		back := *cs[0].Run
		back.Status = store.StatusQueued
		if err := s.Save(ctx, &back, cs[0].Lease); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Save as queued = %v, want ErrInvalid", err)
		}
		other := *cs[0].Run
		if err := s.Save(ctx, &other, cs[1].Lease); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Save with another run's lease = %v, want ErrInvalid", err)
		}
		if _, err := s.Claim(ctx, "", 1, ttl); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Claim without an owner = %v, want ErrInvalid", err)
		}
	})

	t.Run("a run created claimed costs one write and is held by its creator", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := sampleRun("acme", "", "e")
		res, err := s.Create(ctx, r, store.CreateOptions{Owner: "w1", LeaseTTL: ttl})
		if err != nil || res.Lease == nil {
			t.Fatalf("Create = %+v, %v; want a lease", res, err)
		}
		if r.Status != store.StatusRunning || r.Attempt != 1 || res.Lease.Owner != "w1" || res.Lease.RunID != r.ID {
			t.Fatalf("created %s attempt %d lease %+v", r.Status, r.Attempt, res.Lease)
		}
		assertRunnable(t, s, 0)
		if got := mustClaim(t, s, "w2", 1); len(got.Runs) != 0 {
			t.Fatal("a run created claimed was claimed again")
		}
		done := *r
		done.Status = store.StatusSucceeded
		if err := s.Save(ctx, &done, *res.Lease); err != nil {
			t.Fatalf("the creator's outcome: %v", err)
		}
		waiting := sampleRun("acme", "", "e")
		waiting.Status, waiting.WakeAt = store.StatusWaiting, clock.Now().Add(time.Second)
		if res, err := s.Create(ctx, waiting, store.CreateOptions{Owner: "w1", LeaseTTL: ttl}); err != nil || res.Lease != nil {
			t.Fatalf("a waiting run was created claimed: %+v, %v", res, err)
		}
	})

	t.Run("runs with one serialize_by key are claimed one at a time in arrival order", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var k []*store.Run
		for i := range 3 {
			r := sampleRun("acme", "", "e")
			r.SerializeKey = "acme/loans/L-1"
			r.Request.Body = []byte(fmt.Sprint("k", i))
			mustCreate(t, s, r)
			k = append(k, r)
		}
		other := sampleRun("acme", "", "e")
		other.SerializeKey = "acme/loans/L-2"
		mustCreate(t, s, other)
		assertRunnable(t, s, 4) // parked runs count: they wait for a worker too
		got := mustClaim(t, s, "w", 10)
		if ids := claimedIDs(got); !slices.Equal(ids, []string{k[0].ID, other.ID}) {
			t.Fatalf("claimed %v, want the first run of each key", ids)
		}
		finish(t, s, got.Runs[1])
		first := got.Runs[0]
		// Suspended, the first run still holds its key: the next stays parked.
		sus := *first.Run
		sus.Status, sus.WakeAt = store.StatusWaiting, clock.Now().Add(time.Minute)
		if err := s.Save(ctx, &sus, first.Lease); err != nil {
			t.Fatal(err)
		}
		if got := mustClaim(t, s, "w", 10); len(got.Runs) != 0 {
			t.Fatalf("claimed %v while the key's first run waits", claimedIDs(got))
		}
		created := sampleRun("acme", "", "e")
		created.SerializeKey = k[0].SerializeKey
		if res, err := s.Create(ctx, created, store.CreateOptions{Owner: "w", LeaseTTL: ttl}); err != nil || res.Lease != nil || created.Status != store.StatusQueued {
			t.Fatalf("a run behind its key's unfinished runs was created claimed: %+v %s, %v", res, created.Status, err)
		}
		clock.Advance(time.Minute)
		woken := mustClaim(t, s, "w", 10)
		if ids := claimedIDs(woken); !slices.Equal(ids, []string{k[0].ID}) {
			t.Fatalf("claimed %v at the wake time, want the first run only", ids)
		}
		for i, want := range []string{k[1].ID, k[2].ID, created.ID} {
			finish(t, s, woken.Runs[0])
			woken = mustClaim(t, s, "w", 10)
			if ids := claimedIDs(woken); !slices.Equal(ids, []string{want}) {
				t.Fatalf("after run %d finished: claimed %v, want %s", i, ids, want)
			}
		}
	})

	t.Run("a superseded run lets the next run of its serialize_by key go", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		mk := func(debounce string) *store.Run {
			r := sampleRun("acme", "", "e")
			r.SerializeKey, r.DebounceKey = "acme/loans/L-1", debounce
			r.Status, r.WakeAt = store.StatusWaiting, clock.Now().Add(10*time.Second)
			mustCreate(t, s, r)
			return r
		}
		a := mk("acme//e/x")
		b := mk("acme//e/y")
		c := mk("acme//e/x") // supersedes a, the key's head
		assertRunnable(t, s, 2)
		clock.Advance(10 * time.Second)
		got := mustClaim(t, s, "w", 10)
		if ids := claimedIDs(got); !slices.Equal(ids, []string{b.ID}) {
			t.Fatalf("claimed %v, want %s (a was superseded, c is behind b)", ids, b.ID)
		}
		if r, _ := s.GetRun(ctx, a.ID); r.Status != store.StatusSuperseded {
			t.Fatalf("a is %s", r.Status)
		}
		finish(t, s, got.Runs[0])
		if ids := claimedIDs(mustClaim(t, s, "w", 10)); !slices.Equal(ids, []string{c.ID}) {
			t.Fatalf("claimed %v, want %s", ids, c.ID)
		}
	})

	t.Run("debounce: only the last run in the window is claimed, at its wake time", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var last *store.Run
		for range 5 {
			last = sampleRun("acme", "", "e")
			last.DebounceKey = "acme//e/L-1"
			last.Status, last.WakeAt = store.StatusWaiting, clock.Now().Add(10*time.Second)
			mustCreate(t, s, last)
			clock.Advance(time.Second)
		}
		assertRunnable(t, s, 1)
		got := mustClaim(t, s, "w", 10)
		if len(got.Runs) != 0 || !got.Next.Equal(last.WakeAt) {
			t.Fatalf("claimed %v next %v inside the window", claimedIDs(got), got.Next)
		}
		clock.Advance(10 * time.Second)
		if ids := claimedIDs(mustClaim(t, s, "w", 10)); !slices.Equal(ids, []string{last.ID}) {
			t.Fatalf("claimed %v, want the last run %s", ids, last.ID)
		}
	})

	t.Run("debounce: a run that has started is not superseded, even while it waits", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		first := sampleRun("acme", "", "e")
		first.DebounceKey = "acme//e/L-1"
		mustCreate(t, s, first)
		c := mustClaim(t, s, "w", 1).Runs[0]
		// It called a downstream, then suspended in a retry wait.
		sus := *c.Run
		sus.Status, sus.WakeAt = store.StatusWaiting, clock.Now().Add(30*time.Second)
		if err := s.Save(ctx, &sus, c.Lease); err != nil {
			t.Fatal(err)
		}
		newer := sampleRun("acme", "", "e")
		newer.DebounceKey = first.DebounceKey
		newer.Status, newer.WakeAt = store.StatusWaiting, clock.Now().Add(10*time.Second)
		res, err := s.Create(ctx, newer, store.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Superseded) != 0 {
			t.Fatalf("superseded %v: a started run must finish (or compensate) on its own", res.Superseded)
		}
		got, err := s.GetRun(ctx, first.ID)
		if err != nil || got.Status != store.StatusWaiting {
			t.Fatalf("the started run is %v (%v), want still waiting", got.Status, err)
		}
		// A later event still supersedes the newer run, which never started.
		latest := sampleRun("acme", "", "e")
		latest.DebounceKey = first.DebounceKey
		latest.Status, latest.WakeAt = store.StatusWaiting, clock.Now().Add(10*time.Second)
		if res, err := s.Create(ctx, latest, store.CreateOptions{}); err != nil || !slices.Equal(res.Superseded, []string{newer.ID}) {
			t.Fatalf("superseded %v (%v), want only the newer run %s", res.Superseded, err, newer.ID)
		}
	})

	t.Run("a create past MaxRunnable is refused and writes nothing", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		opts := store.CreateOptions{MaxRunnable: 2}
		for range 2 {
			if _, err := s.Create(ctx, sampleRun("acme", "", "e"), opts); err != nil {
				t.Fatal(err)
			}
		}
		r := sampleRunWithKey("acme//e/k")
		if _, err := s.Create(ctx, r, opts); !errors.Is(err, store.ErrFull) {
			t.Fatalf("third create = %v, want ErrFull", err)
		}
		if _, err := s.Create(ctx, sampleRunWithKey("acme//e/k"), store.CreateOptions{}); err != nil {
			t.Fatalf("the refused run's idempotency key was claimed: %v", err)
		}
		// A run a worker would take is refused too: it could suspend into a wait, and the
		// waiting runs would grow past the bound.
		if res, err := s.Create(ctx, sampleRun("acme", "", "e"), store.CreateOptions{MaxRunnable: 2, Owner: "w", LeaseTTL: ttl}); !errors.Is(err, store.ErrFull) {
			t.Fatalf("a run to be created claimed in a full store: %+v, %v; want ErrFull", res, err)
		}
		// Below the bound it is created claimed, and not counted: it is executing.
		claimedRun := sampleRun("acme", "", "e")
		if res, err := s.Create(ctx, claimedRun, store.CreateOptions{MaxRunnable: 4, Owner: "w", LeaseTTL: ttl}); err != nil || res.Lease == nil {
			t.Fatalf("a run created claimed below the bound: %+v, %v", res, err)
		}
		if n := len(listAll(t, s, store.Filter{})); n != 4 {
			t.Fatalf("%d runs stored, want 4", n)
		}
		assertRunnable(t, s, 3)
	})

	t.Run("concurrent claims never hand one run to two workers", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		want := map[string]bool{}
		for i := range 60 {
			r := createQueued(t, s, fmt.Sprint(i))
			want[r.ID] = true
		}
		var mu sync.Mutex
		got := map[string]string{}
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprint("w", w)
				for {
					res, err := s.Claim(ctx, owner, 3, ttl)
					if err != nil {
						t.Error(err)
						return
					}
					if len(res.Runs) == 0 {
						return
					}
					mu.Lock()
					for _, c := range res.Runs {
						if prev, ok := got[c.Run.ID]; ok {
							t.Errorf("run %s claimed by %s and %s", c.Run.ID, prev, owner)
						}
						got[c.Run.ID] = owner
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(got) != len(want) {
			t.Fatalf("%d runs claimed, want %d", len(got), len(want))
		}
	})
}

func createQueued(t *testing.T, s store.Store, body string) *store.Run {
	t.Helper()
	r := sampleRun("acme", "", "e")
	r.Request.Body = []byte(body)
	mustCreate(t, s, r)
	return r
}

func createWaiting(t *testing.T, s store.Store, body string, wake time.Time) *store.Run {
	t.Helper()
	r := sampleRun("acme", "", "e")
	r.Request.Body = []byte(body)
	r.Status, r.WakeAt = store.StatusWaiting, wake
	mustCreate(t, s, r)
	return r
}

func mustClaim(t *testing.T, s store.Store, owner string, n int) store.ClaimResult {
	t.Helper()
	res, err := s.Claim(context.Background(), owner, n, ttl)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return res
}

// finish records c's run as succeeded, under its lease.
func finish(t *testing.T, s store.Store, c store.Claimed) {
	t.Helper()
	done := *c.Run
	done.Status = store.StatusSucceeded
	if err := s.Save(context.Background(), &done, c.Lease); err != nil {
		t.Fatalf("finish %s: %v", c.Run.ID, err)
	}
}

func claimedIDs(res store.ClaimResult) []string {
	var out []string
	for _, c := range res.Runs {
		out = append(out, c.Run.ID)
	}
	return out
}

func assertRunnable(t *testing.T, s store.Store, want int) {
	t.Helper()
	if n, err := s.Runnable(context.Background()); err != nil || n != want {
		t.Errorf("Runnable = %d, %v; want %d", n, err, want)
	}
}
