package store

import (
	"fmt"
	"time"
)

// The queue rules every backend applies, so that bbolt, memory and a later Postgres store
// agree on when a run is due and what a claim does to it.

// Runnable reports whether a run of status st counts as runnable (Queue.Runnable): waiting
// for a worker, now or later.
func (st Status) Runnable() bool { return st == StatusQueued || st == StatusWaiting }

// DueAt is when unfinished run r falls due, parking aside: a queued run in arrival order
// (its ReceivedAt, never later than now, so a sender's clock ahead of ours cannot hold it
// back), a waiting run at its WakeAt, a running run when its lease expires (at once when it
// has none: nobody executes it).
func DueAt(r *Run, leaseExpires, now time.Time) time.Time {
	switch r.Status {
	case StatusQueued:
		if r.ReceivedAt.After(now) || r.ReceivedAt.IsZero() {
			return now
		}
		return r.ReceivedAt
	case StatusWaiting:
		if r.WakeAt.IsZero() {
			return now
		}
		return r.WakeAt
	default:
		if leaseExpires.IsZero() {
			return now
		}
		return leaseExpires
	}
}

// ClaimRun makes r, just claimed, running. A queued run starts its first attempt and a
// running one (its worker died) a new one; a waiting run woken from a suspension goes on
// with the attempt it suspended in, unless it never ran (a debounce wait).
func ClaimRun(r *Run, now time.Time) {
	if r.Status != StatusWaiting || r.Attempt == 0 {
		r.Attempt++
	}
	r.Status, r.WakeAt, r.UpdatedAt = StatusRunning, time.Time{}, now
}

// CheckSave checks a Save's arguments and returns the run's id: the lease must be for this
// run, and the status a worker's to write — a worker checkpoints (running), suspends
// (waiting) or finishes (final); it never queues a run again.
func CheckSave(r *Run, lease Lease) (RunID, error) {
	id, err := ParseRunID(r.ID)
	if err != nil {
		return id, fmt.Errorf("save run: %w", err)
	}
	if r.Status != StatusRunning && r.Status != StatusWaiting && !r.Status.Final() {
		return id, fmt.Errorf("%w: a worker cannot save run %s as %q", ErrInvalid, r.ID, r.Status)
	}
	if lease.RunID != r.ID {
		return id, fmt.Errorf("save run %s: %w: the lease is for run %s", r.ID, ErrInvalid, lease.RunID)
	}
	return id, nil
}

// LeaseHeld reports whether the stored lease (token, owner, expires) is the caller's l on a
// running run. An expired lease that nobody has claimed since is still held: the token is
// what fences, not the clock, so a slow worker loses its run only to another worker.
func LeaseHeld(status Status, token uint64, owner string, expires time.Time, l Lease) bool {
	return status == StatusRunning && !expires.IsZero() && token == l.Token && owner == l.Owner
}

// LeaseLost is the error a backend returns when l is not the run's current lease.
func LeaseLost(l Lease) error {
	return fmt.Errorf("run %s (lease %d of %s): %w", l.RunID, l.Token, l.Owner, ErrLeaseLost)
}

// CheckClaimArgs validates what Claim and Create take from a worker pool.
func CheckClaimArgs(owner string, ttl time.Duration) error {
	if owner == "" {
		return fmt.Errorf("%w: empty lease owner", ErrInvalid)
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: lease ttl %s", ErrInvalid, ttl)
	}
	return nil
}

// RequestCancel applies Queue.Cancel to r, read whole from the store, at now: a run that
// never started ends cancelled, any other unfinished run is marked CancelRequested, and a
// waiting one falls due at once. ErrFinal when r is final.
func RequestCancel(r *Run, now time.Time) error {
	if r.Status.Final() {
		return fmt.Errorf("cancel run %s: %w (%s)", r.ID, ErrFinal, r.Status)
	}
	r.UpdatedAt = now
	if r.Status.Runnable() && r.Attempt == 0 {
		r.Status, r.FinishedAt, r.WakeAt = StatusCancelled, now, time.Time{}
		return nil
	}
	r.CancelRequested = true
	if r.Status == StatusWaiting {
		r.WakeAt = now
	}
	return nil
}
