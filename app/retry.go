package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// Retry starts a new async run of a failed run from its failed step: the steps that
// finished keep their outputs and are not called again. It runs under the saga as it is
// now, when the steps up to the failed one are unchanged since the run; otherwise the
// retry is refused (admin.ErrRefused) with a word to replay instead. Like a replay, it
// bypasses debounce and idempotency: an operator asked for this run.
func (a *App) Retry(ctx context.Context, id string) (string, error) {
	orig, err := a.store.GetRun(ctx, id)
	if err != nil {
		return "", err
	}
	switch orig.Status {
	case store.StatusFailed:
	case store.StatusCompensated, store.StatusCompensationFailed:
		return "", fmt.Errorf("%w: run %s is %s: its completed steps were undone, so there is no checkpoint to go on from; replay it instead", admin.ErrRefused, orig.ID, orig.Status)
	default:
		return "", fmt.Errorf("%w: run %s is %s; only a failed run can be retried", admin.ErrRefused, orig.ID, orig.Status)
	}
	cfg := a.Current()
	old, err := a.pinned.Saga(ctx, cfg, orig.Saga, orig.SagaVersion)
	if err != nil {
		return "", fmt.Errorf("%w: %w", admin.ErrRefused, err)
	}
	newID, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	run := &store.Run{ID: newID.String(), Partner: orig.Partner, Site: orig.Site, Endpoint: orig.Endpoint, Saga: orig.Saga,
		ReceivedAt: time.Now(), RetryOf: orig.ID, Request: orig.Request}
	inv, err := gateway.InvocationForRun(cfg, run)
	if err != nil {
		return "", fmt.Errorf("%w: %w", admin.ErrRefused, err)
	}
	st, err := saga.RetryState(old, inv.Saga, run.ID, orig.Result)
	if err != nil {
		return "", fmt.Errorf("%w: cannot retry run %s: %w", admin.ErrRefused, orig.ID, err)
	}
	if run.State, err = json.Marshal(st); err != nil {
		return "", err
	}
	run.Saga, run.SagaVersion = inv.Saga.Name, inv.Saga.Version
	if _, err := a.runs.AcceptReplay(ctx, run, inv, store.CreateOptions{}); err != nil {
		return "", err
	}
	a.log.Info("run retried from its failed step", zap.String("run_id", run.ID), zap.String("retry_of", orig.ID),
		zap.String("saga_version", run.SagaVersion))
	return run.ID, nil
}

// Cancel cancels run id (dispatch.Dispatcher.Cancel) and returns its status after: cancelled
// when it never started, else the status it is in until a worker compensates it. A final
// run is refused (admin.ErrRefused).
func (a *App) Cancel(ctx context.Context, id string) (store.Status, error) {
	r, err := a.runs.Cancel(ctx, id)
	if errors.Is(err, store.ErrFinal) {
		status := "final"
		if r, gerr := a.store.GetRun(ctx, id); gerr == nil {
			status = string(r.Status)
		}
		return "", fmt.Errorf("%w: run %s is %s, which is final: only a queued, waiting or running run can be cancelled", admin.ErrRefused, id, status)
	}
	if err != nil {
		return "", err
	}
	return r.Status, nil
}
