package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
)

// notifying is a store whose notifications the test sends, as another process's commits
// would through a Postgres store.
type notifying struct {
	Store
	ch chan struct{}
}

func (n notifying) Notifications(ctx context.Context) <-chan struct{} { return n.ch }

func TestAStoreNotificationMakesAnIdleDispatcherClaim(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	ns := notifying{Store: st, ch: make(chan struct{}, 1)}
	// A stopped clock: no timer fires, so only a nudge can make the dispatcher claim.
	r := newRigOn(t, ns, st, stopped{clock}, clock, 2, 10, mustSaga(t, pureSaga))
	defer r.stop()
	time.Sleep(50 * time.Millisecond) // the start's claim found nothing

	// Another instance stores a run: this dispatcher did not accept it.
	run, _ := r.newRun("pure", "L-1", "")
	if _, err := st.Create(context.Background(), run, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got, _ := st.GetRun(context.Background(), run.ID); got.Status != store.StatusQueued {
		t.Fatalf("run %s before any nudge, want queued: nothing else should claim it", got.Status)
	}
	ns.ch <- struct{}{}
	r.waitStatus(run.ID, store.StatusSucceeded)
}
