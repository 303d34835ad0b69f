package saga

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSystemClock(t *testing.T) {
	c := SystemClock()
	t.Run("a cancelled context ends a sleep at once with its cause", func(t *testing.T) {
		cause := errors.New("shutting down")
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		start := time.Now()
		if err := c.Sleep(ctx, time.Hour); !errors.Is(err, cause) {
			t.Errorf("Sleep = %v, want the cause", err)
		}
		if time.Since(start) > time.Second {
			t.Error("Sleep did not return at once")
		}
	})
	t.Run("a zero sleep returns at once", func(t *testing.T) {
		if err := c.Sleep(context.Background(), 0); err != nil {
			t.Error(err)
		}
	})
	t.Run("now is the wall clock", func(t *testing.T) {
		if d := time.Since(c.Now()); d < 0 || d > time.Minute {
			t.Errorf("Now is %v off", d)
		}
	})
}
