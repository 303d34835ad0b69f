// Package store holds pushbackd's durable state: run history, idempotency keys, the work
// queue and the key-value state sagas keep per partner.
//
// Everything outside this package sees interfaces only, so the embedded bbolt store and a
// later shared (Postgres) one are interchangeable; every implementation must pass the
// contract tests in storetest.
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

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func validKey(namespace, key string) error {
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
)

// statuses lists every status, unfinished ones first.
var statuses = [...]Status{StatusQueued, StatusRunning, StatusWaiting, StatusSucceeded,
	StatusFailed, StatusCompensated, StatusCompensationFailed, StatusSuperseded, StatusDuplicate}

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
	case StatusSucceeded, StatusFailed, StatusCompensated, StatusCompensationFailed, StatusSuperseded, StatusDuplicate:
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

	// IdempotencyKey and DebounceKey come scoped by the caller (IdempotencyKey, DebounceKey
	// build them); "" = none.
	IdempotencyKey string
	DebounceKey    string
	SerializeKey   string
	// MessageKey is the sender's message id (Standard Webhooks' webhook-id), scoped by the
	// caller (MessageKey); "" = none. Like IdempotencyKey, it admits one run while it lives.
	MessageKey string

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
}

// Filter selects runs for List. Zero fields match everything.
type Filter struct {
	Partner, Site, Endpoint string // "" = any
	Status                  Status // "" = any
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
	// full, for resuming at start.
	Unfinished(ctx context.Context) ([]*Run, error)
	// Prune deletes final runs received before `before` (zero: no age limit), then the
	// oldest final runs while more than maxRuns (0: no limit) runs are stored, and sweeps
	// expired idempotency keys, message keys and kv entries. It works in bounded chunks so accepts are
	// not held up, and returns how many runs it deleted.
	Prune(ctx context.Context, before time.Time, maxRuns int) (int, error)
}

// Store is everything pushbackd keeps.
type Store interface {
	KV
	Runs
	Sagas
	Close() error
}
