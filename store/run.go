package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// RunID is a run id as stored in keys: the UUID's 16 bytes, big-endian, so keys sort by
// arrival time.
type RunID [16]byte

func (id RunID) String() string { return uuid.UUID(id).String() }

func ParseRunID(s string) (RunID, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return RunID{}, fmt.Errorf("%w: run id %q: %w", ErrInvalid, s, err)
	}
	return RunID(u), nil
}

// FirstIDAt is the smallest id of millisecond ms: the bound time filters compare ids with.
func FirstIDAt(t time.Time) RunID {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	if ms > 1<<48-1 {
		ms = 1<<48 - 1
	}
	var id RunID
	putMs(id[:], ms)
	return id
}

func putMs(b []byte, ms int64) {
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
}

// IDGen makes UUIDv7 ids from a run's ReceivedAt (not the wall clock, so ids and the time
// filters agree even under a test clock). Within one millisecond a 42-bit counter that
// starts at a random value keeps ids increasing (RFC 9562 §6.2, method 1), so arrival
// order survives bursts.
type IDGen struct {
	mu      sync.Mutex
	lastMs  int64
	counter uint64
}

func (g *IDGen) Next(at time.Time) RunID {
	ms := at.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	g.mu.Lock()
	if ms <= g.lastMs {
		// Same millisecond, or the clock stepped back: stay monotonic.
		ms = g.lastMs
		g.counter++
		if g.counter >= 1<<42 {
			ms++
			g.counter = rand.Uint64() >> 23
		}
	} else {
		g.counter = rand.Uint64() >> 23 // 41 bits: leaves at least 2^41 increments
	}
	g.lastMs = ms
	c := g.counter
	g.mu.Unlock()

	var id RunID
	putMs(id[:], ms)
	id[6] = 0x70 | byte(c>>38)&0x0f // version 7, counter bits 41..38
	id[7] = byte(c >> 30)
	id[8] = 0x80 | byte(c>>24)&0x3f // variant 10, counter bits 29..24
	id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
	binary.BigEndian.PutUint32(id[12:], rand.Uint32())
	return id
}

// PrepareCreate validates run and fills in what Create defaults, without touching the
// caller's value; the caller copies the result back once the write succeeded.
func PrepareCreate(run *Run, now time.Time, ids *IDGen) (Run, RunID, error) {
	r := *run
	if err := validateNames(r.Partner, r.Site, r.Endpoint); err != nil {
		return r, RunID{}, err
	}
	if r.Status == "" {
		r.Status = StatusQueued
	}
	if !r.Status.Valid() {
		return r, RunID{}, fmt.Errorf("%w: status %q", ErrInvalid, r.Status)
	}
	var id RunID
	if r.ID == "" {
		if r.ReceivedAt.IsZero() {
			r.ReceivedAt = now
		}
		id = ids.Next(r.ReceivedAt)
		r.ID = id.String()
	} else {
		var err error
		if id, err = ParseRunID(r.ID); err != nil {
			return r, RunID{}, err
		}
		if r.ReceivedAt.IsZero() {
			r.ReceivedAt = time.UnixMilli(int64(binary.BigEndian.Uint64(append(make([]byte, 2, 8), id[:6]...))))
		}
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.ReceivedAt
	}
	if r.Status.Final() && r.FinishedAt.IsZero() {
		r.FinishedAt = now
	}
	return r, id, nil
}

// validateNames keeps NUL out of the names index keys are built from, so composite keys
// cannot collide.
func validateNames(names ...string) error {
	for _, n := range names {
		if strings.IndexByte(n, 0) >= 0 {
			return fmt.Errorf("%w: name %q contains a NUL byte", ErrInvalid, n)
		}
	}
	return nil
}

// ReportSaved tells a worker's run what its Save stored: the status and times the store
// settled, and whether an operator asked to cancel it (Save is where a running worker
// learns of Queue.Cancel).
func ReportSaved(run, stored *Run) {
	run.Status, run.UpdatedAt, run.FinishedAt = stored.Status, stored.UpdatedAt, stored.FinishedAt
	run.CancelRequested = stored.CancelRequested
}

// ApplyUpdate copies the mutable fields of in onto stored, enforcing the final-status rule.
func ApplyUpdate(stored *Run, in *Run, now time.Time) error {
	if in.Status == "" {
		in.Status = stored.Status
	}
	if !in.Status.Valid() {
		return fmt.Errorf("%w: status %q", ErrInvalid, in.Status)
	}
	if stored.Status.Final() && in.Status != stored.Status {
		return fmt.Errorf("update run %s to %s: %w (%s)", stored.ID, in.Status, ErrFinal, stored.Status)
	}
	stored.Status = in.Status
	stored.UpdatedAt = in.UpdatedAt
	if stored.UpdatedAt.IsZero() {
		stored.UpdatedAt = now
	}
	stored.FinishedAt = in.FinishedAt
	if stored.Status.Final() && stored.FinishedAt.IsZero() {
		stored.FinishedAt = now
	}
	stored.WakeAt = in.WakeAt
	stored.Attempt = in.Attempt
	stored.Answer = in.Answer
	stored.State = in.State
	stored.Result = in.Result
	stored.Error = in.Error
	return nil
}

// Supersedable reports whether a newer run with r's debounce key may supersede r: only
// while r has never started. A run that has started may have done things (an http call, a
// kv write) that only its own compensation can undo; waiting in a retry wait or queued
// again after a crash, it must run to its end.
func Supersedable(r *Run) bool {
	return (r.Status == StatusQueued || r.Status == StatusWaiting) && r.Attempt == 0
}

// Supersede marks a pending run superseded by the newer run by with its debounce key.
func Supersede(r *Run, by string, now time.Time) {
	r.Status = StatusSuperseded
	r.SupersededBy = by
	r.UpdatedAt = now
	r.FinishedAt = now
	r.WakeAt = time.Time{}
}

// ListQuery is a Filter checked and turned into id bounds.
type ListQuery struct {
	Filter Filter
	Limit  int
	Desc   bool
	Lo, Hi *RunID // Lo inclusive, Hi exclusive; nil = open
	// Scan is how many runs a backend may read for one page (MaxListScan).
	Scan int
}

func NewListQuery(f Filter) (ListQuery, error) {
	q := ListQuery{Filter: f, Limit: f.Limit, Desc: !f.Oldest, Scan: MaxListScan}
	if err := validateNames(f.Partner, f.Site, f.Endpoint, f.Saga, f.IdempotencyKey); err != nil {
		return q, err
	}
	if f.Status != "" && !f.Status.Valid() {
		return q, fmt.Errorf("%w: status %q", ErrInvalid, f.Status)
	}
	if f.ReplayOf != "" {
		id, err := ParseRunID(f.ReplayOf)
		if err != nil {
			return q, err
		}
		q.Filter.ReplayOf = id.String() // runs store the canonical form
	}
	if f.RetryOf != "" {
		id, err := ParseRunID(f.RetryOf)
		if err != nil {
			return q, err
		}
		q.Filter.RetryOf = id.String()
	}
	if q.Limit <= 0 {
		q.Limit = DefaultListLimit
	}
	if q.Limit > MaxListLimit {
		q.Limit = MaxListLimit
	}
	if !f.Since.IsZero() {
		id := FirstIDAt(f.Since)
		q.Lo = &id
	}
	if !f.Until.IsZero() {
		id := FirstIDAt(f.Until)
		q.Hi = &id
	}
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return q, err
		}
		if q.Desc {
			if q.Hi == nil || bytes.Compare(c[:], q.Hi[:]) < 0 {
				q.Hi = &c
			}
		} else {
			c, ok := incID(c)
			if !ok {
				q.Lo, q.Hi = &c, &c // nothing is after the largest id
			} else if q.Lo == nil || bytes.Compare(c[:], q.Lo[:]) > 0 {
				q.Lo = &c
			}
		}
	}
	return q, nil
}

func (q *ListQuery) InRange(id RunID) bool {
	return (q.Lo == nil || bytes.Compare(id[:], q.Lo[:]) >= 0) &&
		(q.Hi == nil || bytes.Compare(id[:], q.Hi[:]) < 0)
}

func (q *ListQuery) Matches(r *Run) bool {
	f := &q.Filter
	return (f.Partner == "" || r.Partner == f.Partner) &&
		(f.Site == "" || r.Site == f.Site) &&
		(f.Endpoint == "" || r.Endpoint == f.Endpoint) &&
		(f.Status == "" || r.Status == f.Status) &&
		(f.Saga == "" || r.Saga == f.Saga) &&
		(f.IdempotencyKey == "" || r.IdempotencyKey == f.IdempotencyKey) &&
		(f.ReplayOf == "" || r.ReplayOf == f.ReplayOf) &&
		(f.RetryOf == "" || r.RetryOf == f.RetryOf)
}

func incID(id RunID) (RunID, bool) {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			return id, true
		}
	}
	return id, false
}

// Cursors are the last id of a page: ids are unique and every index is ordered by id, so
// the next page is "beyond this id" whatever index serves it, and runs created meanwhile
// do not shift pages.
func EncodeCursor(id RunID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func decodeCursor(s string) (RunID, error) {
	var id RunID
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: cursor %q", ErrInvalid, s)
	}
	copy(id[:], b)
	return id, nil
}

// KeyClaim is a key a new run takes, idempotency or message key, and when it lets go.
type KeyClaim struct {
	Key     string
	Expires time.Time
}

// KeyClaims lists the keys r claims when it is created at now.
func KeyClaims(r *Run, opts CreateOptions, now time.Time) []KeyClaim {
	var out []KeyClaim
	if r.IdempotencyKey != "" {
		ttl := opts.IdempotencyTTL
		if ttl <= 0 {
			ttl = DefaultIdempotencyTTL
		}
		out = append(out, KeyClaim{r.IdempotencyKey, now.Add(ttl)})
	}
	if r.MessageKey != "" {
		ttl := opts.MessageTTL
		if ttl <= 0 {
			ttl = DefaultMessageTTL
		}
		out = append(out, KeyClaim{r.MessageKey, now.Add(ttl)})
	}
	return out
}
