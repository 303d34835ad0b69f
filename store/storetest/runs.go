package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// TestStore runs the Store contract (runs, kv and saga versions) against fresh stores from
// newStore, which must build the store on the given clock and close it in t.Cleanup.
func TestStore(t *testing.T, newStore func(t *testing.T, clock store.Clock) store.Store) {
	ctx := context.Background()

	t.Run("kv", func(t *testing.T) {
		TestKV(t, func(t *testing.T, clock store.Clock) store.KV { return newStore(t, clock) })
	})

	t.Run("sagas", func(t *testing.T) { TestSagas(t, newStore) })

	t.Run("queue", func(t *testing.T) { TestQueue(t, newStore) })
	t.Run("cancel", func(t *testing.T) { TestCancel(t, newStore) })
	t.Run("count", func(t *testing.T) { TestCount(t, newStore) })

	t.Run("a created run reads back whole", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		in := sampleRun("acme", "retail", "encompass")
		in.State = []byte(`{"step":1}`)
		in.Answer = &store.Answer{Status: 200, Body: []byte(`{"status":"OK"}`)}
		mustCreate(t, s, in)
		if in.ID == "" || in.Status != store.StatusQueued || !in.ReceivedAt.Equal(clock.Now()) || !in.UpdatedAt.Equal(clock.Now()) {
			t.Fatalf("Create did not fill in defaults: id %q status %q received %v updated %v", in.ID, in.Status, in.ReceivedAt, in.UpdatedAt)
		}
		got, err := s.GetRun(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		assertSameRun(t, got, in)
	})

	t.Run("runs created in a burst get increasing ids", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		var prev string
		for i := 0; i < 20; i++ {
			r := sampleRun("acme", "", "e")
			mustCreate(t, s, r)
			if r.ID <= prev {
				t.Fatalf("id %s after %s", r.ID, prev)
			}
			prev = r.ID
		}
	})

	t.Run("an unknown id is ErrNotFound and a malformed one ErrInvalid", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		if _, err := s.GetRun(ctx, "0190c7f0-0000-7000-8000-000000000000"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRun(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetRun(ctx, "nope"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("GetRun(nope) = %v, want ErrInvalid", err)
		}
		r := sampleRun("acme", "", "e")
		r.ID = "0190c7f0-0000-7000-8000-000000000000"
		if err := s.Update(ctx, r); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Update(unknown) = %v, want ErrNotFound", err)
		}
	})

	t.Run("bad input is ErrInvalid and writes nothing", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		cases := map[string]func(r *store.Run){
			"a NUL in the partner": func(r *store.Run) { r.Partner = "ac\x00me" },
			"an unknown status":    func(r *store.Run) { r.Status = "paused" },
			"a malformed id":       func(r *store.Run) { r.ID = "not-a-uuid" },
		}
		for name, mod := range cases {
			r := sampleRun("acme", "", "e")
			mod(r)
			if _, err := s.Create(ctx, r, store.CreateOptions{}); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s: Create = %v, want ErrInvalid", name, err)
			}
		}
		r := sampleRun("acme", "", "e")
		mustCreate(t, s, r)
		again := sampleRun("acme", "", "e")
		again.ID = r.ID
		if _, err := s.Create(ctx, again, store.CreateOptions{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create with an existing id = %v, want ErrInvalid", err)
		}
		if runs := listAll(t, s, store.Filter{}); len(runs) != 1 {
			t.Errorf("%d runs stored, want 1", len(runs))
		}
		if _, _, err := s.List(ctx, store.Filter{Cursor: "!!"}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("List with a bad cursor = %v, want ErrInvalid", err)
		}
	})

	t.Run("update replaces the mutable fields only", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := sampleRun("acme", "retail", "encompass")
		mustCreate(t, s, r)
		orig := *r
		clock.Advance(time.Second)
		u := &store.Run{
			ID: r.ID, Partner: "evil", Endpoint: "other", Saga: "x", Request: store.Request{Body: []byte("changed")},
			Status: store.StatusWaiting, WakeAt: clock.Now().Add(time.Minute), Attempt: 2,
			Answer: &store.Answer{Status: 202}, State: []byte(`{"next":"b"}`), Error: "retrying",
		}
		if err := s.Update(ctx, u); err != nil {
			t.Fatal(err)
		}
		want := orig
		want.Status, want.WakeAt, want.Attempt = store.StatusWaiting, u.WakeAt, 2
		want.Answer, want.State, want.Error = u.Answer, u.State, "retrying"
		want.UpdatedAt = clock.Now()
		got, err := s.GetRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		assertSameRun(t, got, &want)
		if !u.UpdatedAt.Equal(clock.Now()) {
			t.Errorf("Update did not report UpdatedAt back: %v", u.UpdatedAt)
		}

		clock.Advance(time.Second)
		got.Status, got.WakeAt, got.UpdatedAt = store.StatusSucceeded, time.Time{}, time.Time{}
		got.Result = []byte(`{"steps":[]}`)
		if err := s.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
		final, _ := s.GetRun(ctx, r.ID)
		if !final.FinishedAt.Equal(clock.Now()) || !bytes.Equal(final.Result, got.Result) {
			t.Errorf("final run: finished %v result %q", final.FinishedAt, final.Result)
		}
		for st, want := range map[store.Status]int{store.StatusWaiting: 0, store.StatusQueued: 0, store.StatusSucceeded: 1} {
			if n := len(listAll(t, s, store.Filter{Status: st})); n != want {
				t.Errorf("List(status %s) has %d runs, want %d: the status index did not move", st, n, want)
			}
			if n := len(listAll(t, s, store.Filter{Status: st, Partner: "acme"})); n != want {
				t.Errorf("List(status %s, partner) has %d runs, want %d: the status index did not move", st, n, want)
			}
		}
	})

	t.Run("a final run cannot move to another status", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		r := sampleRun("acme", "", "e")
		mustCreate(t, s, r)
		r.Status = store.StatusFailed
		if err := s.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Result = []byte(`{"late":true}`)
		if err := s.Update(ctx, r); err != nil {
			t.Errorf("updating a final run in its status: %v", err)
		}
		r.Status = store.StatusRunning
		if err := s.Update(ctx, r); !errors.Is(err, store.ErrFinal) {
			t.Errorf("Update failed->running = %v, want ErrFinal", err)
		}
	})

	t.Run("every final status is listed by its filter, stays final and is pruned", func(t *testing.T) {
		final := []store.Status{store.StatusSucceeded, store.StatusFailed, store.StatusCompensated,
			store.StatusCompensationFailed, store.StatusSuperseded, store.StatusDuplicate, store.StatusCancelled}
		for _, st := range store.Statuses() {
			if st.Final() != slices.Contains(final, st) {
				t.Errorf("%s: Final() = %v", st, st.Final())
			}
		}
		clock := NewManualClock()
		s := newStore(t, clock)
		byStatus := map[store.Status]string{}
		for _, st := range final {
			r := sampleRun("acme", "", "e")
			mustCreate(t, s, r)
			r.Status = st
			if err := s.Update(ctx, r); err != nil {
				t.Fatalf("Update to %s: %v", st, err)
			}
			byStatus[st] = r.ID
		}
		for _, st := range final {
			if got := ids(listAll(t, s, store.Filter{Status: st})); !slices.Equal(got, []string{byStatus[st]}) {
				t.Errorf("List(status %s) = %v, want %s", st, got, byStatus[st])
			}
			r, err := s.GetRun(ctx, byStatus[st])
			if err != nil || r.Status != st || r.FinishedAt.IsZero() {
				t.Fatalf("GetRun = %+v, %v; want %s with a finish time", r, err, st)
			}
			r.Status = store.StatusRunning
			if err := s.Update(ctx, r); !errors.Is(err, store.ErrFinal) {
				t.Errorf("Update %s -> running = %v, want ErrFinal", st, err)
			}
		}
		clock.Advance(time.Minute)
		if n, err := s.Prune(ctx, clock.Now(), 0); err != nil || n != len(final) {
			t.Errorf("Prune = %d, %v; want every one of the %d final runs", n, err, len(final))
		}
	})

	t.Run("list serves every filter in both orders across pages", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var all []*store.Run
		scopes := [][3]string{{"acme", "", "encompass"}, {"acme", "retail", "encompass"}, {"acme", "retail", "snapdocs"},
			{"acme", "wholesale", "encompass"}, {"globex", "", "encompass"}, {"globex", "east", "hooks"}}
		sts := []store.Status{store.StatusQueued, store.StatusSucceeded, store.StatusFailed, store.StatusWaiting}
		for i := 0; i < 60; i++ {
			sc := scopes[(i*7)%len(scopes)]
			r := sampleRun(sc[0], sc[1], sc[2])
			r.Request.Body = []byte("body")
			mustCreate(t, s, r)
			if st := sts[(i*5)%len(sts)]; st != store.StatusQueued {
				r.Status, r.State, r.Result = st, []byte(`{"s":1}`), []byte(`{"r":1}`)
				if err := s.Update(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			all = append(all, r)
			if i%3 == 0 {
				clock.Advance(time.Second)
			}
		}
		start := all[0].ReceivedAt
		filters := []store.Filter{
			{}, {Partner: "acme"}, {Partner: "acme", Site: "retail"}, {Partner: "acme", Site: "retail", Endpoint: "encompass"},
			{Partner: "acme", Endpoint: "encompass"}, {Endpoint: "encompass"}, {Site: "retail"}, {Partner: "nobody"},
			{Status: store.StatusFailed}, {Status: store.StatusQueued, Partner: "acme"},
			{Status: store.StatusSucceeded, Endpoint: "encompass"}, {Status: store.StatusRunning},
			{Since: start.Add(5 * time.Second)}, {Until: start.Add(7 * time.Second)},
			{Partner: "acme", Since: start.Add(3 * time.Second), Until: start.Add(12 * time.Second)},
			{Status: store.StatusWaiting, Since: start.Add(4 * time.Second)},
		}
		for _, f := range filters {
			for _, oldest := range []bool{false, true} {
				for _, limit := range []int{1, 7, 0} {
					f := f
					f.Oldest, f.Limit = oldest, limit
					want := expected(all, f)
					got := listAll(t, s, f)
					if !slices.Equal(ids(got), ids(want)) {
						t.Errorf("List(%+v):\n got %v\nwant %v", f, ids(got), ids(want))
					}
					for _, r := range got {
						if r.Request.Body != nil || r.State != nil || r.Result != nil {
							t.Errorf("List returned a heavy field for %s", r.ID)
							break
						}
					}
				}
			}
		}
	})

	t.Run("list finds runs by saga, idempotency key, replayed and retried run across pages", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var all []*store.Run
		for i := 0; i < 40; i++ {
			r := sampleRun([]string{"acme", "globex"}[i%2], "", "e")
			r.Saga = []string{"one", "two", "three"}[i%3]
			r.Status = store.StatusSucceeded // final, so Prune may take it
			if i%4 == 0 {
				// Keys repeat once their ttl is over, so one key names several runs.
				r.IdempotencyKey = fmt.Sprintf("acme//e/k%d", i%3)
			}
			if i > 0 && i%5 == 0 {
				r.ReplayOf = all[i/5].ID
			}
			if i > 0 && i%7 == 0 {
				r.RetryOf = all[i/7].ID
			}
			res, err := s.Create(ctx, r, store.CreateOptions{IdempotencyTTL: time.Second})
			if err != nil || res.DuplicateOf != "" {
				t.Fatalf("Create = %+v, %v", res, err)
			}
			all = append(all, r)
			clock.Advance(2 * time.Second)
		}
		filters := []store.Filter{
			{Saga: "two"}, {Saga: "two", Partner: "acme"}, {Saga: "nothing"},
			{IdempotencyKey: "acme//e/k0"}, {IdempotencyKey: "acme//e/k1", Partner: "acme"},
			{IdempotencyKey: "acme//e/k2", Saga: "one"}, {IdempotencyKey: "acme//e/k"},
			{IdempotencyKey: "acme//e/k0", Since: all[10].ReceivedAt},
			{ReplayOf: all[3].ID}, {ReplayOf: strings.ToUpper(all[5].ID)}, {ReplayOf: all[39].ID},
			{RetryOf: all[2].ID}, {RetryOf: strings.ToUpper(all[4].ID)}, {RetryOf: all[39].ID},
		}
		for _, f := range filters {
			for _, oldest := range []bool{false, true} {
				for _, limit := range []int{1, 2, 0} {
					f := f
					f.Oldest, f.Limit = oldest, limit
					want := expected(all, f)
					if got := listAll(t, s, f); !slices.Equal(ids(got), ids(want)) {
						t.Errorf("List(%+v):\n got %v\nwant %v", f, ids(got), ids(want))
					}
				}
			}
		}
		if len(expected(all, store.Filter{IdempotencyKey: "acme//e/k0"})) < 2 {
			t.Fatal("the test needs a key shared by several runs")
		}
		// Pruned runs leave the key's index with them.
		if _, err := s.Prune(ctx, all[20].ReceivedAt, 0); err != nil {
			t.Fatal(err)
		}
		if got, want := listAll(t, s, store.Filter{IdempotencyKey: "acme//e/k0"}), expected(all[20:], store.Filter{IdempotencyKey: "acme//e/k0"}); !slices.Equal(ids(got), ids(want)) {
			t.Errorf("after prune: got %v, want %v", ids(got), ids(want))
		}
		if _, _, err := s.List(ctx, store.Filter{ReplayOf: "not-a-run-id"}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("List(replay_of not an id) = %v, want ErrInvalid", err)
		}
		if _, _, err := s.List(ctx, store.Filter{RetryOf: "not-a-run-id"}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("List(retry_of not an id) = %v, want ErrInvalid", err)
		}
		got, err := s.GetRun(ctx, all[28].ID)
		if err != nil || got.RetryOf != all[4].ID {
			t.Errorf("GetRun(a retry).RetryOf = %q, %v; want %s", got.RetryOf, err, all[4].ID)
		}
	})

	t.Run("a full last page has no next cursor", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		for i := 0; i < 4; i++ {
			mustCreate(t, s, sampleRun("acme", "", "e"))
		}
		page, next, err := s.List(ctx, store.Filter{Limit: 2})
		if err != nil || len(page) != 2 || next == "" {
			t.Fatalf("first page: %d runs, next %q, %v", len(page), next, err)
		}
		page, next, err = s.List(ctx, store.Filter{Limit: 2, Cursor: next})
		if err != nil || len(page) != 2 || next != "" {
			t.Fatalf("last page: %d runs, next %q, %v; want 2 runs and no cursor", len(page), next, err)
		}
	})

	t.Run("unfinished returns queued, running and waiting runs in arrival order, whole", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		var want []string
		for i, st := range []store.Status{store.StatusWaiting, store.StatusSucceeded, store.StatusQueued, store.StatusRunning, store.StatusFailed, store.StatusQueued} {
			r := sampleRun("acme", "", fmt.Sprint("e", i%2))
			r.Request.Body = []byte(fmt.Sprint("body", i))
			mustCreate(t, s, r)
			r.Status, r.State = st, []byte(fmt.Sprint(i))
			if err := s.Update(ctx, r); err != nil {
				t.Fatal(err)
			}
			if !st.Final() {
				want = append(want, r.ID)
			}
		}
		got, err := s.Unfinished(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), want) {
			t.Fatalf("Unfinished = %v, want %v", ids(got), want)
		}
		for _, r := range got {
			if len(r.Request.Body) == 0 || len(r.State) == 0 {
				t.Errorf("run %s came back without body or state", r.ID)
			}
		}
	})

	t.Run("an idempotency key admits one run until it expires", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		first := sampleRun("acme", "", "e")
		first.IdempotencyKey = "acme/e/evt-1"
		mustCreate(t, s, first)
		clock.Advance(59 * time.Minute)
		dup := sampleRun("acme", "", "e")
		dup.IdempotencyKey = first.IdempotencyKey
		res, err := s.Create(ctx, dup, store.CreateOptions{IdempotencyTTL: time.Hour})
		if err != nil || res.DuplicateOf != first.ID {
			t.Fatalf("second Create = %+v, %v; want DuplicateOf %s", res, err, first.ID)
		}
		if dup.ID != "" {
			t.Errorf("a duplicate got an id: %s", dup.ID)
		}
		if n := len(listAll(t, s, store.Filter{})); n != 1 {
			t.Fatalf("%d runs after a duplicate, want 1", n)
		}
		other := sampleRun("acme", "", "e")
		other.IdempotencyKey = "acme/e/evt-2"
		mustCreate(t, s, other)

		clock.Advance(48*time.Hour - 59*time.Minute) // the first key used the default ttl
		late := sampleRun("acme", "", "e")
		late.IdempotencyKey = first.IdempotencyKey
		res, err = s.Create(ctx, late, store.CreateOptions{})
		if err != nil || res.DuplicateOf != "" {
			t.Fatalf("Create after expiry = %+v, %v; want a new run", res, err)
		}
		res, _ = s.Create(ctx, sampleRunWithKey(first.IdempotencyKey), store.CreateOptions{})
		if res.DuplicateOf != late.ID {
			t.Fatalf("the key now points at %q, want the new run %s", res.DuplicateOf, late.ID)
		}
	})

	t.Run("fifty concurrent creates with one key make one run", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		created, dups := createConcurrently(t, s, 50, func(int) *store.Run { return sampleRunWithKey("acme/e/same") })
		if len(created) != 1 || len(dups) != 1 || dups[created[0]] != 49 {
			t.Fatalf("created %v, duplicates %v; want one run and 49 duplicates of it", created, dups)
		}
		if n := len(listAll(t, s, store.Filter{})); n != 1 {
			t.Fatalf("%d runs stored, want 1", n)
		}
	})

	t.Run("a message key admits one run until it expires", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		opts := store.CreateOptions{MessageTTL: 10 * time.Minute}
		first := sampleRun("acme", "", "e")
		first.MessageKey = "message-id:acme//e/msg_1"
		if res, err := s.Create(ctx, first, opts); err != nil || res.DuplicateOf != "" {
			t.Fatalf("Create = %+v, %v", res, err)
		}
		clock.Advance(10*time.Minute - time.Second)
		dup := sampleRun("acme", "", "e")
		dup.MessageKey = first.MessageKey
		if res, err := s.Create(ctx, dup, opts); err != nil || res.DuplicateOf != first.ID {
			t.Fatalf("Create within the ttl = %+v, %v; want DuplicateOf %s", res, err, first.ID)
		}
		clock.Advance(time.Second)
		late := sampleRun("acme", "", "e")
		late.MessageKey = first.MessageKey
		if res, err := s.Create(ctx, late, opts); err != nil || res.DuplicateOf != "" {
			t.Fatalf("Create after the ttl = %+v, %v; want a new run", res, err)
		}
		got, err := s.GetRun(ctx, late.ID)
		if err != nil || got.MessageKey != first.MessageKey {
			t.Fatalf("stored message key %q, %v", got.MessageKey, err)
		}
	})

	t.Run("a run with both keys is a duplicate by either and a duplicate claims neither", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		mk := func(idem, msg string) (*store.Run, store.CreateResult) {
			r := sampleRun("acme", "", "e")
			r.IdempotencyKey, r.MessageKey = idem, msg
			res, err := s.Create(ctx, r, store.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return r, res
		}
		a, _ := mk("acme//e/evt-1", "message-id:acme//e/msg_1")
		if _, res := mk("acme//e/evt-2", "message-id:acme//e/msg_1"); res.DuplicateOf != a.ID {
			t.Fatalf("same message, new event: %+v, want a duplicate of %s", res, a.ID)
		}
		if _, res := mk("acme//e/evt-1", "message-id:acme//e/msg_2"); res.DuplicateOf != a.ID {
			t.Fatalf("same event, new message: %+v, want a duplicate of %s", res, a.ID)
		}
		// Neither duplicate above claimed its other key.
		if _, res := mk("acme//e/evt-2", "message-id:acme//e/msg_2"); res.DuplicateOf != "" {
			t.Fatalf("keys only duplicates carried: %+v, want a new run", res)
		}
	})

	t.Run("fifty concurrent creates with one message key make one run", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		created, dups := createConcurrently(t, s, 50, func(i int) *store.Run {
			r := sampleRun("acme", "", "e")
			r.IdempotencyKey = fmt.Sprint("acme//e/evt-", i) // distinct: only the message key is shared
			r.MessageKey = "message-id:acme//e/msg_1"
			return r
		})
		if len(created) != 1 || len(dups) != 1 || dups[created[0]] != 49 {
			t.Fatalf("created %v, duplicates %v; want one run and 49 duplicates of it", created, dups)
		}
	})

	t.Run("a pruned run's message key goes with it", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := sampleRun("acme", "", "e")
		r.MessageKey = "message-id:acme//e/msg_1"
		mustCreate(t, s, r)
		r.Status = store.StatusSucceeded
		if err := s.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		if n, err := s.Prune(ctx, clock.Now(), 0); err != nil || n != 1 {
			t.Fatalf("Prune = %d, %v; want 1", n, err)
		}
		again := sampleRun("acme", "", "e")
		again.MessageKey = r.MessageKey
		if res, err := s.Create(ctx, again, store.CreateOptions{}); err != nil || res.DuplicateOf != "" {
			t.Fatalf("Create with a pruned run's message key = %+v, %v; want a new run", res, err)
		}
	})

	t.Run("a debounced run supersedes the queued and waiting runs with its key", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		mk := func(key string) (*store.Run, store.CreateResult) {
			r := sampleRun("acme", "", "e")
			r.DebounceKey = key
			res, err := s.Create(ctx, r, store.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return r, res
		}
		a, _ := mk("acme/loan-1")
		other, _ := mk("acme/loan-2")
		clock.Advance(time.Second)
		b, res := mk("acme/loan-1")
		if !slices.Equal(res.Superseded, []string{a.ID}) {
			t.Fatalf("Superseded = %v, want [%s]", res.Superseded, a.ID)
		}
		got, _ := s.GetRun(ctx, a.ID)
		if got.Status != store.StatusSuperseded || !got.FinishedAt.Equal(clock.Now()) {
			t.Fatalf("a is %s finished %v, want superseded now", got.Status, got.FinishedAt)
		}
		if got.SupersededBy != b.ID {
			t.Fatalf("a.SupersededBy = %q, want %q (the run that superseded it)", got.SupersededBy, b.ID)
		}
		if page := listAll(t, s, store.Filter{Status: store.StatusSuperseded}); len(page) != 1 || page[0].SupersededBy != b.ID {
			t.Fatalf("List shows superseded runs %+v, want a with SupersededBy %s", page, b.ID)
		}
		a.Status = store.StatusRunning
		if err := s.Update(ctx, a); !errors.Is(err, store.ErrFinal) {
			t.Fatalf("starting a superseded run: %v, want ErrFinal", err)
		}

		b.Status = store.StatusRunning
		if err := s.Update(ctx, b); err != nil {
			t.Fatal(err)
		}
		c, res := mk("acme/loan-1")
		if len(res.Superseded) != 0 {
			t.Fatalf("a running run was superseded: %v", res.Superseded)
		}
		b.Status = store.StatusWaiting
		if err := s.Update(ctx, b); err != nil {
			t.Fatal(err)
		}
		d, res := mk("acme/loan-1")
		slices.Sort(res.Superseded)
		want := []string{b.ID, c.ID}
		slices.Sort(want)
		if !slices.Equal(res.Superseded, want) {
			t.Fatalf("Superseded = %v, want %v", res.Superseded, want)
		}
		unfinished, _ := s.Unfinished(ctx)
		if !slices.Equal(ids(unfinished), []string{other.ID, d.ID}) {
			t.Fatalf("Unfinished = %v, want [%s %s]", ids(unfinished), other.ID, d.ID)
		}
	})

	t.Run("prune deletes old final runs and keeps unfinished ones", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var runs []*store.Run
		for i := 0; i < 10; i++ {
			r := sampleRun("acme", "", "e")
			r.IdempotencyKey = fmt.Sprint("acme/e/", i)
			r.Request.Body = []byte("b")
			mustCreate(t, s, r)
			if i%4 != 0 { // 0, 4, 8 stay queued
				r.Status = store.StatusSucceeded
				if err := s.Update(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			runs = append(runs, r)
			clock.Advance(time.Minute)
		}
		n, err := s.Prune(ctx, runs[5].ReceivedAt, 0)
		if err != nil || n != 3 { // 1, 2, 3
			t.Fatalf("Prune(before run 5) = %d, %v; want 3", n, err)
		}
		n, err = s.Prune(ctx, time.Time{}, 5) // 7 left; 2 more go: 5, 6
		if err != nil || n != 2 {
			t.Fatalf("Prune(max 5) = %d, %v; want 2", n, err)
		}
		want := []string{runs[0].ID, runs[4].ID, runs[7].ID, runs[8].ID, runs[9].ID}
		if got := ids(listAll(t, s, store.Filter{Oldest: true})); !slices.Equal(got, want) {
			t.Fatalf("left %v, want %v", got, want)
		}
		if _, err := s.GetRun(ctx, runs[1].ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetRun(pruned) = %v, want ErrNotFound", err)
		}
		if n, _ := s.Prune(ctx, clock.Now(), 1); n != 2 {
			t.Fatalf("Prune(everything final) = %d, want 2 (queued runs stay)", n)
		}
		// A pruned run's idempotency key goes with it.
		res, err := s.Create(ctx, sampleRunWithKey("acme/e/1"), store.CreateOptions{})
		if err != nil || res.DuplicateOf != "" {
			t.Fatalf("Create with a pruned run's key = %+v, %v; want a new run", res, err)
		}
		res, _ = s.Create(ctx, sampleRunWithKey("acme/e/0"), store.CreateOptions{})
		if res.DuplicateOf != runs[0].ID {
			t.Fatalf("a kept run's key was lost: %+v", res)
		}
	})

	t.Run("prune sweeps expired kv entries and idempotency keys", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		if err := s.Put(ctx, "acme", "short", []byte(`1`), store.PutOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		r := sampleRunWithKey("acme/e/x")
		if _, err := s.Create(ctx, r, store.CreateOptions{IdempotencyTTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
		if _, err := s.Prune(ctx, time.Time{}, 0); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := s.Get(ctx, "acme", "short"); found {
			t.Fatal("expired kv entry readable after prune")
		}
		if _, err := s.GetRun(ctx, r.ID); err != nil {
			t.Fatalf("the run lost with its expired key: %v", err)
		}
	})

	t.Run("a cancelled context and a closed store are errors", func(t *testing.T) {
		s := newStore(t, NewManualClock())
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Create(cctx, sampleRun("acme", "", "e"), store.CreateOptions{}); err == nil {
			t.Error("Create with a cancelled context succeeded")
		}
		if _, _, err := s.List(cctx, store.Filter{}); err == nil {
			t.Error("List with a cancelled context succeeded")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, sampleRun("acme", "", "e"), store.CreateOptions{}); !errors.Is(err, store.ErrClosed) {
			t.Errorf("Create after Close = %v, want ErrClosed", err)
		}
		if _, err := s.Unfinished(ctx); !errors.Is(err, store.ErrClosed) {
			t.Errorf("Unfinished after Close = %v, want ErrClosed", err)
		}
	})
}

func sampleRun(partner, site, endpoint string) *store.Run {
	return &store.Run{
		Partner: partner, Site: site, Endpoint: endpoint,
		Saga: "encompass-milestone", SagaVersion: "3", Mode: "async",
		Request: store.Request{
			Method: "POST", Path: "/pushback/" + partner + "/" + endpoint,
			Headers: map[string][]string{"Content-Type": {"application/json"}, "X-Sig": {"<redacted>"}},
			Query:   "a=1", RemoteIP: "203.0.113.9", ContentType: "application/json",
			Body: []byte(`{"eventType":"milestone"}`),
		},
	}
}

func sampleRunWithKey(key string) *store.Run {
	r := sampleRun("acme", "", "e")
	r.IdempotencyKey = key
	return r
}

func mustCreate(t *testing.T, s store.Store, r *store.Run) {
	t.Helper()
	res, err := s.Create(context.Background(), r, store.CreateOptions{})
	if err != nil || res.DuplicateOf != "" {
		t.Fatalf("Create = %+v, %v", res, err)
	}
}

// listAll follows cursors to the end.
func listAll(t *testing.T, s store.Store, f store.Filter) []*store.Run {
	t.Helper()
	var out []*store.Run
	for pages := 0; ; pages++ {
		page, next, err := s.List(context.Background(), f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		limit := f.Limit
		if limit == 0 {
			limit = store.DefaultListLimit
		}
		if len(page) > limit || (next != "" && len(page) != limit) {
			t.Fatalf("List(%+v): page of %d with next %q", f, len(page), next)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		if pages > 10000 {
			t.Fatal("List never ends")
		}
		f.Cursor = next
	}
}

// expected is List's answer worked out by hand from every run.
func expected(all []*store.Run, f store.Filter) []*store.Run {
	var out []*store.Run
	for _, r := range all {
		ms := r.ReceivedAt.UnixMilli()
		if (f.Partner == "" || r.Partner == f.Partner) && (f.Site == "" || r.Site == f.Site) &&
			(f.Endpoint == "" || r.Endpoint == f.Endpoint) && (f.Status == "" || r.Status == f.Status) &&
			(f.Since.IsZero() || ms >= f.Since.UnixMilli()) && (f.Until.IsZero() || ms < f.Until.UnixMilli()) &&
			(f.Saga == "" || r.Saga == f.Saga) && (f.IdempotencyKey == "" || r.IdempotencyKey == f.IdempotencyKey) &&
			(f.ReplayOf == "" || strings.EqualFold(r.ReplayOf, f.ReplayOf)) &&
			(f.RetryOf == "" || strings.EqualFold(r.RetryOf, f.RetryOf)) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *store.Run) int {
		if f.Oldest {
			return cmpString(a.ID, b.ID)
		}
		return cmpString(b.ID, a.ID)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ids(runs []*store.Run) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

// assertSameRun compares runs with times by instant, not by location or monotonic reading.
func assertSameRun(t *testing.T, got, want *store.Run) {
	t.Helper()
	norm := func(r store.Run) store.Run {
		for _, tp := range []*time.Time{&r.ReceivedAt, &r.UpdatedAt, &r.FinishedAt, &r.WakeAt} {
			if !tp.IsZero() {
				*tp = tp.UTC().Round(0)
			}
		}
		return r
	}
	g, w := norm(*got), norm(*want)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("run differs:\n got %+v\nwant %+v", g, w)
	}
}

// createConcurrently creates n runs at once, build(i) making each, and returns the ids of
// those created and, per run id, how many creates were answered as its duplicates.
func createConcurrently(t *testing.T, s store.Store, n int, build func(i int) *store.Run) (created []string, dups map[string]int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	dups = map[string]int{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := build(i)
			res, err := s.Create(context.Background(), r, store.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case res.DuplicateOf != "":
				dups[res.DuplicateOf]++
			default:
				created = append(created, r.ID)
			}
		}()
	}
	wg.Wait()
	return created, dups
}
