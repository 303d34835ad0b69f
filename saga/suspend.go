package saga

import (
	"errors"
	"fmt"
	"time"
)

// Outcomes of Resume that are not the end of the run. Neither is a store status of a
// finished run: the caller keeps the run unfinished.
const (
	// StatusWaiting: the run is suspended until Result.WakeAt. Its last checkpoint (written
	// before Resume returned) holds the wait; the caller resumes it from there at WakeAt.
	StatusWaiting = "waiting"
	// StatusInterrupted: the caller's context ended with ErrInterrupted (shutdown, or a lost
	// lease). Nothing was undone and nothing more is recorded: the run resumes from its
	// last checkpoint, as after a crash.
	StatusInterrupted = "interrupted"
)

// ErrInterrupted, as the cause of the context given to Resume, says the caller is giving the
// run up rather than failing it: the step in flight is abandoned, no compensation or
// on_failure runs, and Resume returns StatusInterrupted.
var ErrInterrupted = errors.New("the run was interrupted; it resumes from its last checkpoint")

// Suspends reports whether a wait (in any phase) that ends at until suspends the run
// rather than sleeping in it. The engine and whoever stores its
// checkpoints both ask, so they agree on whether a checkpoint with a wait frees the run.
func (inv *Invocation) Suspends(until time.Time) bool {
	return inv.Suspend && !until.Before(inv.SleepUntil)
}

// suspension stops a step's retry loop and the run with it: the run waits until `until`,
// outside the engine.
type suspension struct{ until time.Time }

func (s *suspension) Error() string {
	return fmt.Sprintf("suspended until %s", s.until.Format(time.RFC3339Nano))
}
