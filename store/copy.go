package store

import (
	"context"
	"fmt"
	"time"
)

// Moving a stopped instance's state into another backend (pushbackd store copy): a source
// store exports what it holds as raw records, in batches, and a destination imports each
// record only if it has none with that identity. So a copy run twice adds nothing, and a
// copy interrupted halfway and run again completes.

// ExportedRun is a run as stored, whole (body, state, result), with its place in the
// queue that the run record does not say.
type ExportedRun struct {
	Run *Run
	// Parked: queued or waiting behind an earlier unfinished run with its SerializeKey.
	Parked bool
}

// RunKey is an idempotency or message key (Run.IdempotencyKey, Run.MessageKey as stored)
// and the run it admitted until Expires.
type RunKey struct {
	Key     string
	RunID   string
	Expires time.Time
}

// KVEntry is one kv entry; Expires is zero when it never expires.
type KVEntry struct {
	Namespace, Key string
	Value          []byte
	Expires        time.Time
}

// ExportBatch is how many records an Exporter hands over at once: one destination
// transaction each, so a large file neither commits per record nor in one huge transaction.
const ExportBatch = 256

// Exporter reads a store's raw records in batches of at most ExportBatch, calling fn for
// each batch; an error from fn stops the walk and is returned. Runs come in id (arrival)
// order with their bodies, so a destination that files serialize_by runs in insertion
// order keeps their order. Expired keys and kv entries are left out: they admit nothing.
type Exporter interface {
	ExportRuns(ctx context.Context, fn func([]ExportedRun) error) error
	ExportRunKeys(ctx context.Context, fn func([]RunKey) error) error
	ExportKV(ctx context.Context, fn func([]KVEntry) error) error
	// ExportSagaVersions gives every version of every saga, with Source.
	ExportSagaVersions(ctx context.Context, fn func([]SagaVersion) error) error
}

// Importer inserts records it does not hold yet and returns how many it inserted; a
// record whose identity (run id; key; namespace and key; saga name and number) it holds
// already is left as it is. A running run is imported without its lease, due at once:
// the worker that held it belongs to the old store, and the next claim resumes it as
// after a crash.
type Importer interface {
	ImportRuns(ctx context.Context, runs []ExportedRun) (added int, err error)
	ImportRunKeys(ctx context.Context, keys []RunKey) (added int, err error)
	ImportKV(ctx context.Context, entries []KVEntry) (added int, err error)
	ImportSagaVersions(ctx context.Context, versions []SagaVersion) (added int, err error)
}

// CopyKind counts one kind of record.
type CopyKind struct {
	Name        string // "runs", "keys", "kv", "saga versions"
	Read, Added int
}

// CopyStats is a copy's progress so far, in the order Copy moves the kinds.
type CopyStats struct {
	Kinds [4]CopyKind
}

func (s CopyStats) String() string {
	out := ""
	for i, k := range s.Kinds {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %d read, %d new", k.Name, k.Read, k.Added)
	}
	return out
}

// Copy moves everything from src into dst: saga versions, kv, runs, then their keys (a key
// names a run, so it follows the runs). progress, when not nil, is called after every
// batch with the counts so far.
func Copy(ctx context.Context, src Exporter, dst Importer, progress func(CopyStats)) (CopyStats, error) {
	st := CopyStats{Kinds: [4]CopyKind{{Name: "saga versions"}, {Name: "kv"}, {Name: "runs"}, {Name: "keys"}}}
	step := func(i int, n, added int, err error) error {
		if err != nil {
			return fmt.Errorf("copy %s: %w", st.Kinds[i].Name, err)
		}
		st.Kinds[i].Read += n
		st.Kinds[i].Added += added
		if progress != nil {
			progress(st)
		}
		return nil
	}
	err := src.ExportSagaVersions(ctx, func(b []SagaVersion) error {
		added, err := dst.ImportSagaVersions(ctx, b)
		return step(0, len(b), added, err)
	})
	if err == nil {
		err = src.ExportKV(ctx, func(b []KVEntry) error {
			added, err := dst.ImportKV(ctx, b)
			return step(1, len(b), added, err)
		})
	}
	if err == nil {
		err = src.ExportRuns(ctx, func(b []ExportedRun) error {
			added, err := dst.ImportRuns(ctx, b)
			return step(2, len(b), added, err)
		})
	}
	if err == nil {
		err = src.ExportRunKeys(ctx, func(b []RunKey) error {
			added, err := dst.ImportRunKeys(ctx, b)
			return step(3, len(b), added, err)
		})
	}
	return st, err
}
