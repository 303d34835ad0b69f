package saga

import (
	"context"
	"time"
)

// Clock is the engine's time source, so tests can drive retries and backoff without sleeping.
// It satisfies store.Clock.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done, and then returns context.Cause(ctx).
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
