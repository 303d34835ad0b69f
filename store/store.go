// Package store defines pushbackd's durable state — run history, idempotency keys, the
// work queue (which unfinished run is due when, and which worker holds it), saga versions
// and the key-value state sagas keep per partner — as types and interfaces, and holds the
// rules every backend shares, exported so a backend in its own package applies them: when
// a run is due and what a claim does to it (queue.go), how a run is created, updated and
// listed (run.go), how sender keys are scoped (keys.go), the run record codec (codec.go).
//
// Backends live in their own packages (store/bolt, the embedded file; store/memory, for
// tests; a later shared Postgres one) and depend on nothing here that is unexported. Every
// backend must pass the contract suite in storetest.
package store

import (
	"context"
	"errors"
	"slices"
	"time"
)

// ErrEmptyKey is returned for an empty namespace or key: no backend can store one.
var ErrEmptyKey = errors.New("store: empty namespace or key")

// ErrKVFull is returned by a Put of a new key into a namespace that holds
// PutOptions.MaxEntries entries already; nothing was written.
var ErrKVFull = errors.New("store: kv namespace is full")

// KV is durable key-value state for sagas' kv steps. The namespace is the partner id, so
// partners never see each other's keys. Values are JSON documents; implementations store the
// bytes as given and return a copy.
type KV interface {
	// Get returns the value and true, or nil and false when the key is absent or expired.
	Get(ctx context.Context, namespace, key string) ([]byte, bool, error)
	// Put stores value under key, within the limits of opts.
	Put(ctx context.Context, namespace, key string, value []byte, opts PutOptions) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, namespace, key string) error
}

// PutOptions tune one Put.
type PutOptions struct {
	// TTL > 0 makes the entry expire that long after now; 0 keeps it.
	TTL time.Duration
	// MaxEntries > 0 caps the namespace: a Put of a key the namespace does not hold fails
	// with ErrKVFull, writing nothing, when the namespace holds MaxEntries entries; replacing
	// a key it holds always works. The check and the write are one atomic step, and the
	// count is kept as entries come and go, never counted by a scan. Expired entries count
	// until they are swept: by Prune, or by a Put that finds the namespace full, which
	// sweeps expired entries first. 0 is no cap.
	MaxEntries int
}

// Clock is the time source for expiry; saga.Clock satisfies it.
type Clock interface {
	Now() time.Time
}

type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

func ValidKey(namespace, key string) error {
	if namespace == "" || key == "" {
		return ErrEmptyKey
	}
	return nil
}

// Errors callers branch on. Implementations wrap them with detail; test with errors.Is.
var (
	// ErrNotFound: no run has that id (never created, or pruned), or no saga version has
	// that name and number.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable wraps write failures the process cannot fix (disk full, read-only file
	// system, I/O error): the gateway answers 503 on it, so senders retry later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalid: the caller passed something no implementation can store or serve (a NUL
	// byte in a partner name, an unknown status, a malformed cursor, an id that exists, a
	// malformed saga name, empty saga source).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrFinal: Update tried to move a run that is already final to another status. This is
	// how a dispatcher learns that a waiting run it picked up was superseded meanwhile.
	ErrFinal = errors.New("store: run is already final")
	// ErrLocked: another process holds the data file.
	ErrLocked = errors.New("the data file is in use by another pushbackd process")
	// ErrLeaseLost: a worker wrote to a run it no longer holds — its lease expired and
	// another worker claimed the run, or the run was released, suspended or finished.
	// Nothing was written; the worker must stop working on the run.
	ErrLeaseLost = errors.New("store: lease lost")
	// ErrFull: Create refused a queued or waiting run because CreateOptions.MaxRunnable
	// runs are runnable already. Nothing was written.
	ErrFull = errors.New("store: too many runnable runs")
)

// Status is where a run stands.
type Status string

const (
	StatusQueued      Status = "queued"
	StatusRunning     Status = "running"
	StatusWaiting     Status = "waiting"
	StatusSucceeded   Status = "succeeded"
	StatusFailed      Status = "failed"
	StatusCompensated Status = "compensated" // failed; every compensation succeeded
	// StatusCompensationFailed: failed, and at least one compensation did not succeed
	// after its retries, so something the run did may still be in place.
	StatusCompensationFailed Status = "compensation_failed"
	StatusSuperseded         Status = "superseded"
	StatusDuplicate          Status = "duplicate"
	// StatusCancelled: an operator cancelled the run (Queue.Cancel); the steps it had
	// completed were compensated.
	StatusCancelled Status = "cancelled"
)

// statuses lists every status, unfinished ones first.
var statuses = [...]Status{StatusQueued, StatusRunning, StatusWaiting, StatusSucceeded,
	StatusFailed, StatusCompensated, StatusCompensationFailed, StatusSuperseded, StatusDuplicate, StatusCancelled}

// Statuses returns every status, unfinished ones first: for messages that list them and
// for backends that walk an index per status.
func Statuses() []Status { return slices.Clone(statuses[:]) }

// FinalStatuses returns the statuses Final reports, in the order of Statuses.
func FinalStatuses() []Status {
	return slices.DeleteFunc(Statuses(), func(s Status) bool { return !s.Final() })
}

// Final reports whether the run is over: nothing will run for it again.
func (s Status) Final() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusCompensated, StatusCompensationFailed, StatusSuperseded, StatusDuplicate, StatusCancelled:
		return true
	}
	return false
}

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool {
	for _, v := range statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Run is one accepted request and its progress.
//
// Times come back in UTC with nanosecond precision and no monotonic reading.
type Run struct {
	// ID is a UUIDv7 string: it sorts by arrival time. Create assigns one from ReceivedAt
	// when empty; a caller-chosen id must be a UUID whose time is ReceivedAt, because time
	// filters work on the id.
	ID          string
	Partner     string
	Site        string // "" for partner-level endpoints
	Endpoint    string
	Saga        string
	SagaVersion string
	Mode        string // "sync" | "async"
	Status      Status

	ReceivedAt time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time // zero until final
	// WakeAt is when a waiting run is due (retry wait or debounce wait); zero otherwise.
	WakeAt time.Time
	// Attempt counts how many times execution has started: 1 on the first run, and every
	// resume after a restart increments it.
	Attempt  int
	ReplayOf string // id of the run this one replays
	// SupersededBy is the id of the newer run with this run's debounce key that superseded
	// it; written in the same transaction as that run's Create.
	SupersededBy string
	// RetryOf is the id of the failed run this one retries from its failed step.
	RetryOf string
	// CancelRequested is set by Queue.Cancel on a run that has started: whoever executes it
	// next stops before its next step, compensates and ends it cancelled. Only Cancel sets
	// it; Update and Save keep the stored value.
	CancelRequested bool

	// IdempotencyKey and DebounceKey come scoped by the caller (IdempotencyKey, DebounceKey
	// build them); "" = none.
	IdempotencyKey string
	DebounceKey    string
	SerializeKey   string
	// MessageKey is the sender's message id (Standard Webhooks' webhook-id), scoped by the
	// caller (MessageKey); "" = none. Like IdempotencyKey, it admits one run while it lives.
	MessageKey string
	// TraceParent is the W3C traceparent of the span that accepted the request ("" when
	// tracing is off), so a worker that claims the run later continues the same trace.
	TraceParent string

	Request Request
	Answer  *Answer // what the sender was told; nil until answered
	State   []byte  // opaque engine checkpoint (JSON); the store does not interpret it
	Result  []byte  // opaque final result (JSON: steps, errors); the store does not interpret it
	Error   string
}

// Request is the accepted HTTP request as recorded.
type Request struct {
	Method      string
	Path        string
	Headers     map[string][]string // already redacted by the caller
	Query       string
	RemoteIP    string
	ContentType string
	Body        []byte
}

// Answer is what the sender was told.
type Answer struct {
	Status int
	Body   []byte
}

// CreateOptions tune one Create.
type CreateOptions struct {
	// IdempotencyTTL is how long run.IdempotencyKey keeps refusing duplicates; 0 means
	// DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
	// MessageTTL is how long run.MessageKey keeps refusing duplicates; 0 means
	// DefaultMessageTTL.
	MessageTTL time.Duration
	// MaxRunnable > 0 refuses a queued or waiting run with ErrFull when that many runs are
	// runnable already (Queue.Runnable), checked in the create's own transaction so
	// concurrent creates cannot overshoot it. A run that would be created claimed (Owner)
	// is refused too, since it may suspend into a wait: so the runnable runs stay within
	// MaxRunnable plus the runs executing. Created claimed, it is not counted: it executes.
	MaxRunnable int
	// Owner, when set, creates the run already claimed by Owner for LeaseTTL, in the same
	// transaction, if it is due at once: queued, and not parked behind an earlier
	// unfinished run with its SerializeKey. It is then stored running, attempt 1, and
	// CreateResult.Lease is its lease; otherwise it is stored as it came and Lease is nil.
	// This is how a worker that is free takes a run it accepts without a second write.
	Owner    string
	LeaseTTL time.Duration
}

// DefaultIdempotencyTTL covers senders that retry for a day or two.
const DefaultIdempotencyTTL = 48 * time.Hour

// DefaultMessageTTL is twice Standard Webhooks' default tolerance of five minutes: a
// message whose timestamp is up to five minutes ahead stays acceptable for ten.
const DefaultMessageTTL = 10 * time.Minute

// CreateResult says what else Create found or did.
type CreateResult struct {
	// DuplicateOf, when not empty, is the id of an unexpired run with the same
	// IdempotencyKey or MessageKey; nothing was written.
	DuplicateOf string
	// Superseded lists runs with the same DebounceKey that were queued or waiting and are
	// now StatusSuperseded, in the same transaction as the new run.
	Superseded []string
	// Lease is set when the run was created claimed (CreateOptions.Owner).
	Lease *Lease
}

// Filter selects runs for List. Zero fields match everything.
type Filter struct {
	Partner, Site, Endpoint string // "" = any
	Status                  Status // "" = any
	Saga                    string // "" = any
	// IdempotencyKey matches the run's stored (scoped) key exactly, as runs show it; every
	// backend answers it from an index, so a lookup by key never scans the history.
	IdempotencyKey string
	ReplayOf       string // id of the run replayed; "" = any
	RetryOf        string // id of the run retried; "" = any
	// Since (inclusive) and Until (exclusive) bound ReceivedAt through the id's time, so
	// both are truncated to the millisecond. Zero = open.
	Since, Until time.Time
	Limit        int    // default 50, at most 1000
	Cursor       string // opaque; the next value of the previous page
	Oldest       bool   // false: newest first
}

// Page sizes for List.
const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
	// MaxListScan bounds the runs one List call reads to fill a page when a filter no index
	// answers (saga, replay_of, retry_of) leaves most of them out: a page may then come back short,
	// even empty, with a next cursor that resumes the scan, so no query, however unlikely
	// to match, holds a read transaction over the whole history.
	MaxListScan = 10000
)

// Runs is the run history and the durable work queue.
type Runs interface {
	// Create durably records a new run and returns only once it is on disk, so the caller
	// may answer 2xx. Create fills in run.ID, ReceivedAt, UpdatedAt and Status (queued)
	// when empty. The idempotency and message key checks and the debounce supersede happen
	// in the same transaction as the insert: of concurrent creates with one key, exactly one
	// is stored. On DuplicateOf nothing is written and run is unchanged.
	Create(ctx context.Context, run *Run, opts CreateOptions) (CreateResult, error)
	// Update durably replaces the mutable fields of a stored run: Status, UpdatedAt (now when
	// zero), FinishedAt (now when zero and the status is final), WakeAt, Attempt, Answer,
	// State, Result and Error. Other fields keep their stored values. ErrNotFound when the
	// run is gone; ErrFinal when it is final and run.Status differs.
	Update(ctx context.Context, run *Run) error
	// GetRun returns the full run, or ErrNotFound. (Not Get: Store embeds KV, whose Get
	// has another signature.)
	GetRun(ctx context.Context, id string) (*Run, error)
	// List returns a page of runs matching f and the cursor of the next page ("" at the end).
	// Runs in a page leave Request.Body, State and Result nil to keep pages light; GetRun
	// has them.
	List(ctx context.Context, f Filter) (runs []*Run, next string, err error)
	// Unfinished returns every queued, running and waiting run in arrival (id) order, in
	// full. Workers do not need it (they Claim); it is for checks and tools.
	Unfinished(ctx context.Context) ([]*Run, error)
	// Prune deletes final runs received before `before` (zero: no age limit), then the
	// oldest final runs while more than maxRuns (0: no limit) runs are stored, and sweeps
	// expired idempotency keys, message keys and kv entries. It works in bounded chunks so accepts are
	// not held up, and returns how many runs it deleted.
	Prune(ctx context.Context, before time.Time, maxRuns int) (int, error)
}

// Lease is a worker's hold on a run it executes. While it holds the lease nobody else
// claims the run; once it expires, the worker is presumed dead and the run is due again.
type Lease struct {
	RunID string
	Owner string // the process that holds it (a Claim's owner)
	// Token is the fencing token: it grows each time the run is claimed, so a worker whose
	// lease expired and was taken over holds an older token than the run, and every write
	// it makes with it is refused (ErrLeaseLost).
	Token   uint64
	Expires time.Time
}

// Claimed is a run a worker now holds, whole (body, state), with its lease.
type Claimed struct {
	Run   *Run
	Lease Lease
}

// ClaimResult is what one Claim took, and when to come back.
type ClaimResult struct {
	Runs []Claimed
	// Next is when the earliest run left unclaimed falls due: now or earlier when more were
	// due than asked for; the expiry of a lease, when that comes first (a held run falls
	// due when its lease expires, for its rescue); zero when no unfinished run is left to
	// fall due. A worker pool sets one timer for it.
	Next time.Time
}

// Queue is the durable work queue: which unfinished run is due when, and who executes it.
// A Postgres backend implements Claim with FOR UPDATE SKIP LOCKED over a due-time index, so
// several processes can share it; the embedded one serves one process.
//
// Every unfinished run stands in exactly one place:
//   - queued: due at once (in arrival order, from ReceivedAt);
//   - waiting: due at WakeAt (a debounce window or a suspended retry wait);
//   - running under a lease: due when the lease expires, which means its worker died;
//   - parked: queued or waiting behind an earlier unfinished run with its SerializeKey,
//     and not due at all until that run is final. So runs with one serialize_by key
//     execute one at a time, in arrival order, whichever process claims them.
//
// Claim takes due runs earliest first from an index of due times (never a scan of all
// runs) and leases them. Every write a worker makes to a claimed run (Save, Release) is
// fenced by its lease.
type Queue interface {
	// Claim leases up to max due runs to owner until now+ttl, earliest due first. A
	// queued run and a rescued one (running, lease expired) start a new attempt
	// (Attempt+1); a waiting run woken from a suspension keeps its attempt (one that never
	// ran, a debounced run, starts its first). Claimed runs are stored running.
	Claim(ctx context.Context, owner string, max int, ttl time.Duration) (ClaimResult, error)
	// Renew extends each lease to now+ttl; lost lists the runs whose lease the caller no
	// longer holds (not renewed): their workers must stop.
	Renew(ctx context.Context, leases []Lease, ttl time.Duration) (lost []string, err error)
	// Save is Update for a run the caller holds: it writes only while lease is the run's
	// current lease, and fails with ErrLeaseLost otherwise. It sets run.CancelRequested
	// from the stored run, so a worker learns of a Cancel at its next checkpoint. run.Status says what the write
	// is: running (a checkpoint; the lease stays), waiting (a suspension until WakeAt: the
	// lease is released) or a final status (the outcome: the lease is released, and the
	// next run parked behind it, if any, falls due).
	Save(ctx context.Context, run *Run, lease Lease) error
	// Cancel asks for unfinished run id to be cancelled, in one transaction, and returns the
	// run as stored after it (light: no body, state or result). A queued or waiting run that
	// never started (Attempt 0) has done nothing: it ends StatusCancelled at once (and the
	// run parked behind it, if any, falls due). Any other unfinished run gets
	// CancelRequested; a waiting one falls due at once (WakeAt now), so a worker claims it
	// and compensates, and a running one keeps its lease: its worker learns of the request
	// from its next Save, which copies CancelRequested back into the run it was given.
	// ErrFinal when the run is final, ErrNotFound when there is none.
	Cancel(ctx context.Context, id string) (*Run, error)
	// Release gives a run back unfinished: it stays running, due at once, and the next
	// claim resumes it from its last checkpoint as after a crash. ErrLeaseLost when the
	// lease is not held.
	Release(ctx context.Context, lease Lease) error
	// Runnable counts the queued and waiting runs, parked ones included: what is waiting
	// for a worker, now or later. It is the queue depth limits.queue bounds.
	Runnable(ctx context.Context) (int, error)
}

// Store is everything pushbackd keeps.
type Store interface {
	KV
	Runs
	Queue
	Sagas
	Close() error
}
