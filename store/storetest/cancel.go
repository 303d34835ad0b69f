package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// TestCancel runs the Queue.Cancel contract against fresh stores from newStore: what a
// cancel does to a run in each place of the queue, and how a worker learns of it.
func TestCancel(t *testing.T, newStore func(t *testing.T, clock store.Clock) store.Store) {
	ctx := context.Background()

	t.Run("a queued run that never started ends cancelled at once and is not claimed", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := createQueued(t, s, "r")
		got, err := s.Cancel(ctx, r.ID)
		if err != nil || got.Status != store.StatusCancelled || got.FinishedAt.IsZero() || got.CancelRequested {
			t.Fatalf("Cancel = %+v, %v; want cancelled and finished", got, err)
		}
		if c := mustClaim(t, s, "w", 10); len(c.Runs) != 0 {
			t.Fatalf("a cancelled run was claimed: %v", claimedIDs(c))
		}
		assertRunnable(t, s, 0)
		runs, _, err := s.List(ctx, store.Filter{Status: store.StatusCancelled})
		if err != nil || len(runs) != 1 || runs[0].ID != r.ID {
			t.Fatalf("List(cancelled) = %v, %v", runs, err)
		}
	})

	t.Run("a cancelled run lets the next run of its serialize_by key go", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		var k []*store.Run
		for range 2 {
			r := sampleRun("acme", "", "e")
			r.SerializeKey = "acme/loans/L-1"
			mustCreate(t, s, r)
			k = append(k, r)
		}
		if _, err := s.Cancel(ctx, k[0].ID); err != nil {
			t.Fatal(err)
		}
		if got := claimedIDs(mustClaim(t, s, "w", 10)); len(got) != 1 || got[0] != k[1].ID {
			t.Fatalf("claimed %v, want the key's next run %s", got, k[1].ID)
		}
	})

	t.Run("a waiting run that started keeps its checkpoint, falls due at once and is claimed with the request", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := createQueued(t, s, "r")
		c := mustClaim(t, s, "w1", 1).Runs[0]
		sus := *c.Run
		sus.Status, sus.WakeAt, sus.State = store.StatusWaiting, clock.Now().Add(time.Hour), []byte(`{"next":1}`)
		if err := s.Save(ctx, &sus, c.Lease); err != nil {
			t.Fatal(err)
		}
		got, err := s.Cancel(ctx, r.ID)
		if err != nil || got.Status != store.StatusWaiting || !got.CancelRequested {
			t.Fatalf("Cancel = %+v, %v; want waiting with the request", got, err)
		}
		w := mustClaim(t, s, "w2", 1)
		if len(w.Runs) != 1 {
			t.Fatalf("the cancelled waiting run was not due at once: next %v", w.Next)
		}
		cr := w.Runs[0].Run
		if !cr.CancelRequested || string(cr.State) != `{"next":1}` || cr.Attempt != 1 || string(cr.Request.Body) != "r" {
			t.Fatalf("claimed %+v", cr)
		}
		// The worker's writes keep the request; its outcome ends the run.
		cr.Status, cr.CancelRequested = store.StatusCancelled, false
		if err := s.Save(ctx, cr, w.Runs[0].Lease); err != nil {
			t.Fatal(err)
		}
		if final, _ := s.GetRun(ctx, r.ID); final.Status != store.StatusCancelled || !final.CancelRequested {
			t.Fatalf("final %s, request %v; want cancelled, and the request kept", final.Status, final.CancelRequested)
		}
	})

	t.Run("a running run keeps its lease and its worker learns of the cancel from its next save", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		r := createQueued(t, s, "r")
		c := mustClaim(t, s, "w1", 1).Runs[0]
		if got, err := s.Cancel(ctx, r.ID); err != nil || got.Status != store.StatusRunning || !got.CancelRequested {
			t.Fatalf("Cancel = %+v, %v", got, err)
		}
		if again := mustClaim(t, s, "w2", 1); len(again.Runs) != 0 {
			t.Fatalf("a held run was claimed again after a cancel: %v", claimedIDs(again))
		}
		cp := *c.Run
		cp.State = []byte(`{"next":2}`)
		if err := s.Save(ctx, &cp, c.Lease); err != nil {
			t.Fatal(err)
		}
		if !cp.CancelRequested {
			t.Fatal("Save did not tell the worker of the cancel")
		}
	})

	t.Run("cancelling a final run is ErrFinal and an unknown one ErrNotFound", func(t *testing.T) {
		clock := NewManualClock()
		s := newStore(t, clock)
		createQueued(t, s, "r")
		c := mustClaim(t, s, "w", 1).Runs[0]
		finish(t, s, c)
		if _, err := s.Cancel(ctx, c.Run.ID); !errors.Is(err, store.ErrFinal) {
			t.Errorf("Cancel(final) = %v, want ErrFinal", err)
		}
		if _, err := s.Cancel(ctx, "019b7ca9-9070-7183-a505-37589cc57c17"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Cancel(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.Cancel(ctx, "nope"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Cancel(not an id) = %v, want ErrInvalid", err)
		}
	})
}
