package dispatch

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// Cancel asks the store to cancel run id (store.Queue.Cancel) and returns the run as it
// stands after. A run that never started is cancelled there and then. A waiting run that
// did start is due at once: the claimer is nudged, and the worker that takes it compensates
// what it did and ends it cancelled. A running run stops before its next step, when its
// worker's next checkpoint tells it.
func (d *Dispatcher) Cancel(ctx context.Context, id string) (*store.Run, error) {
	start := time.Now()
	r, err := d.o.Store.Cancel(ctx, id)
	d.o.Observer.StoreCommit("cancel", time.Since(start))
	if err != nil {
		return nil, err
	}
	switch {
	case r.Status == store.StatusCancelled:
		d.o.Observer.RunFinished(r.Partner, r.Endpoint, &saga.Result{RunID: r.ID, Saga: r.Saga, SagaVersion: r.SagaVersion, Status: saga.StatusCancelled})
		if r.SerializeKey != "" {
			d.poke() // the key's next run is due now
		}
	case r.Status == store.StatusWaiting:
		d.poke()
	}
	d.log.Info("run cancel requested", zap.String("run_id", r.ID), zap.String("status", string(r.Status)))
	return r, nil
}
