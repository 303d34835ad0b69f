// Package bolt is the embedded store: one bbolt file, owned by one process, holding runs,
// their indexes, the work queue, saga versions and kv state. It applies the rules package
// store shares with every backend and passes the storetest contract suite.
package bolt

// The bbolt data file. Every key that names a run ends in the run's id as 16 big-endian
// bytes (a UUIDv7), so every bucket and every index prefix is in arrival order and a page
// of List is a cursor walk, never a sort. Names (partner, site, endpoint, status) never
// contain NUL, which separates them.
//
//	meta/
//	  "schema"   -> uint64 BE: layout version (4)
//	  "runs"     -> uint64 BE: number of runs stored (max_runs pruning without a count walk)
//	  "runnable" -> uint64 BE: queued and waiting runs (limits.queue without a count walk)
//
//	runs/
//	  <id> -> run record without the request body (store.EncodeRun)
//	bodies/
//	  <id> -> request body; absent when empty. Kept apart so checkpoints (Update) do not
//	          rewrite the body.
//
//	idx_status_scope/                  List by status and/or partner / site / endpoint; Unfinished;
//	                                   Prune
//	  <status> 0x00 <partner> 0x00 <site> 0x00 <endpoint> 0x00 <id> -> ""
//	idx_debounce/                      unfinished runs with a debounce key
//	  <uvarint len(key)> <key> <id> -> ""
//
//	queue/                             the work queue (queue.go): one entry per unfinished run
//	  <id> -> <due: int64 BE unix ns> <fencing token: uint64 BE> <lease expires: int64 BE unix
//	          ns, 0 = not held> <flags: 1 = parked> <lease owner>
//	idx_due/                           unfinished runs that are not parked, by when they fall due
//	  <due: int64 BE unix ns> <id> -> ""
//	idx_serial/                        unfinished runs with a serialize_by key, by arrival
//	  <uvarint len(key)> <key> <id> -> ""
//	idx_idem/                          every run with an idempotency key, for List's exact filter
//	  <uvarint len(key)> <key> <id> -> ""
//
//	idem/                              idempotency keys and message keys (store.IdempotencyKey, store.MessageKey)
//	  <key> -> <id> <expires: int64 BE unix ns>
//	idem_exp/                          idempotency and message keys by expiry, for the sweep
//	  <expires: int64 BE unix ns> <key> -> ""
//
//	kv/                                saga kv state
//	  <uvarint len(namespace)> <namespace> <key> -> <expires: int64 BE unix ns, 0 = never> <value>
//	kv_exp/
//	  <expires: int64 BE unix ns> <kv key> -> ""
//	kv_count/                          entries per namespace, kept by every write, for the cap
//	  <namespace> -> uint64 BE (absent = 0)
//
//	saga_versions/                     saga version history; Prune never touches it
//	  <uvarint len(name)> <name> <number: uint64 BE> -> version record (sagas.go)
//
// saga_versions came after layout version 1 shipped without a version bump: it is purely
// additive, so open creates it in an older file, and a file that cannot be written then
// still opens, reading as having no saga versions.
//
// idx_idem came after layout version 3, also without a bump: open creates it and fills it
// from the runs in the same transaction. Unlike idem it keeps a key as long as its run, so
// a run stays findable by key after the key stopped refusing duplicates. A file that
// cannot be written opens without it, and List answers the filter by a bounded scan.
//
// Layout version 4 dropped idx_status ("<status> 0x00 <id>") and idx_scope ("<partner> 0x00
// <site> 0x00 <endpoint> 0x00 <id>"): idx_status_scope answers a status alone as one
// stream per scope and a scope alone as one stream per status, so a create writes one index
// leaf page instead of three, and a status change one instead of two. Open deletes both
// from a version 3 file (upgradeV3); a version 3 file that cannot be written opens for
// reading, which never uses them.
//
// Layout version 3 added the work queue: queue, idx_due, idx_serial and the runnable
// count. Open builds them for a version 2 file from its unfinished runs, in one
// transaction (upgrade.go).
//
// Layout version 2 scoped idempotency and debounce keys by site and endpoint (they were
// "<partner>/<endpoint>/<key>" and "<partner>/<saga>/<key>") and added kv_count. Open
// upgrades a version 1 file in place (upgrade.go): the keys still live are recomputed
// from the runs they point to, so a duplicate sent before the upgrade is still refused
// after it, and a waiting run is still superseded.
//
// A filter with wildcards among partner/site/endpoint (e.g. partner only) is served by
// finding the distinct scopes under the fixed prefix (one Seek per distinct value) and
// merging their id-ordered streams; the number of streams is the number of endpoints that
// match, not the number of runs. Keys longer than maxKeyLen (idempotency and debounce
// keys come from senders) are replaced by their SHA-256.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushbackd/pushbackd/store"
	bolterrors "go.etcd.io/bbolt/errors"

	"go.etcd.io/bbolt"
)

var (
	bucketMeta           = []byte("meta")
	bucketRuns           = []byte("runs")
	bucketBodies         = []byte("bodies")
	bucketIdxStatus      = []byte("idx_status") // layout version 3 and before
	bucketIdxScope       = []byte("idx_scope")  // layout version 3 and before
	bucketIdxStatusScope = []byte("idx_status_scope")
	bucketIdxDebounce    = []byte("idx_debounce")
	bucketIdem           = []byte("idem")
	bucketIdemExp        = []byte("idem_exp")
	bucketKV             = []byte("kv")
	bucketKVExp          = []byte("kv_exp")
	bucketSagaVersions   = []byte("saga_versions")
	bucketKVCount        = []byte("kv_count")
	bucketQueue          = []byte("queue")
	bucketIdxDue         = []byte("idx_due")
	bucketIdxSerial      = []byte("idx_serial")
	bucketIdxIdem        = []byte("idx_idem")
	bucketUpgrade        = []byte("upgrade") // while an upgrade is under way: the old key buckets

	metaSchema   = []byte("schema")
	metaRuns     = []byte("runs")
	metaRunnable = []byte("runnable")
)

// requiredBuckets are the buckets every file of this layout version has: a file lacking one
// is not initialised.
func requiredBuckets() [][]byte {
	return [][]byte{bucketMeta, bucketRuns, bucketBodies,
		bucketIdxStatusScope, bucketIdxDebounce, bucketIdem, bucketIdemExp, bucketKV, bucketKVExp,
		bucketKVCount, bucketQueue, bucketIdxDue, bucketIdxSerial}
}

// allBuckets adds the buckets added without a version bump, which open creates when missing.
func allBuckets() [][]byte {
	return append(requiredBuckets(), bucketSagaVersions, bucketIdxIdem)
}

const schemaVersion = 4

// Options tune Open. The zero value is ready to use.
type Options struct {
	// Timeout bounds the wait for the file lock another process holds; default 1s.
	Timeout time.Duration
	// Clock is the time source for defaults and expiry; nil is the system clock.
	Clock store.Clock
	// MaxBatchDelay is how long the writer waits for more writes to join a commit after the
	// first one arrives. The default, 0, is no wait: the writer commits whatever has
	// queued, and writes that arrive during one fsync share the next. Measured on the
	// development VM (BenchmarkCreateParallel/CreateSerial), a wait only added latency:
	// 2ms made a lone accept 3.0ms instead of 0.6ms and cut parallel throughput from ~33k
	// to ~13k creates/s. A wait may pay off on disks whose fsync is much slower.
	MaxBatchDelay time.Duration
	// MaxBatchSize caps the writes in one commit; default 1000.
	MaxBatchSize int

	// openFile replaces os.OpenFile in tests, to make the file fail writes.
	openFile func(string, int, os.FileMode) (*os.File, error)
	// listScan replaces store.MaxListScan in tests, so a short scan needs few runs.
	listScan int
	// preallocReserve replaces the free space the file is not written ahead into, in
	// tests, so they do not depend on the temporary directory's free space.
	preallocReserve uint64
}

// Defaults for Options.
const (
	DefaultLockTimeout  = time.Second
	DefaultMaxBatchSize = 1000
)

// Store is the embedded Store: one bbolt file, one process. Writes go through one writer
// goroutine that commits whatever has queued in a single transaction (group commit), so
// concurrent accepts share one fsync; reads run in parallel with it.
type Store struct {
	db       *bbolt.DB
	path     string
	clock    store.Clock
	ids      store.IDGen
	maxDelay time.Duration
	maxBatch int
	listScan int

	mu      sync.RWMutex // closed and sends on queue
	closed  bool
	queue   chan *writeReq
	stopped chan struct{}

	commits atomic.Uint64
	writes  atomic.Uint64

	prealloc *prealloc // nil: the file is not written ahead
}

var _ store.Store = (*Store)(nil)

// Stats counts the writer's work, for metrics and for the group-commit test.
type Stats struct {
	Commits uint64 // transactions committed (each one fsync)
	Writes  uint64 // write requests committed
	Pages   uint64 // pages written by all write transactions (bbolt's count since open)
}

// Open opens (creating when missing) the data file at path. Its directory is created
// 0700 when missing.
func Open(path string, o Options) (*Store, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultLockTimeout
	}
	if o.Clock == nil {
		o.Clock = store.SystemClock{}
	}
	if o.MaxBatchDelay < 0 {
		o.MaxBatchDelay = 0
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = DefaultMaxBatchSize
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, wrapIOError(err))
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: o.Timeout,
		// The hashmap freelist keeps allocation fast in a file that pruning fragments.
		FreelistType: bbolt.FreelistMapType,
		OpenFile:     o.openFile,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (lock not acquired within %s)", path, store.ErrLocked, o.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, wrapIOError(err))
	}
	if err := prepareFile(db, o.Clock.Now()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, wrapIOError(err))
	}
	_ = releaseOrphans(db, o.Clock.Now()) // unwritable: claims fail later, with the reason
	b := &Store{
		db:       db,
		path:     path,
		clock:    o.Clock,
		maxDelay: o.MaxBatchDelay,
		maxBatch: o.MaxBatchSize,
		listScan: o.listScan,
		queue:    make(chan *writeReq, o.MaxBatchSize),
		stopped:  make(chan struct{}),
		prealloc: newPrealloc(path, cmp.Or(o.preallocReserve, preallocReserve)),
	}
	go b.writer()
	return b, nil
}

var errNotInitialised = errors.New("data file not initialised")

// prepareFile makes the file ready for this layout version: it initialises a new file,
// upgrades an older layout, and creates buckets added without a version bump. It writes
// only when something is missing or old, so a file that has become read-only still opens
// for reading: the admin API can show history while accepts answer 503.
func prepareFile(db *bbolt.DB, now time.Time) error {
	var version uint64
	var missing, upgrading, noIdemIndex bool
	_ = db.View(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			version = u64(meta.Get(metaSchema))
		}
		for _, name := range allBuckets() {
			missing = missing || tx.Bucket(name) == nil
		}
		upgrading = tx.Bucket(bucketUpgrade) != nil
		noIdemIndex = tx.Bucket(bucketIdxIdem) == nil && tx.Bucket(bucketRuns) != nil
		return nil
	})
	switch {
	case version > schemaVersion:
		return fmt.Errorf("data file has layout version %d, this pushbackd knows %d: use a newer pushbackd", version, schemaVersion)
	case version == 1 || version == 2 || upgrading:
		if version == 1 || upgrading {
			if err := upgradeV1(db, now); err != nil {
				return fmt.Errorf("upgrade the data file from layout version 1 to 2: %w", err)
			}
		}
		if err := db.Update(func(tx *bbolt.Tx) error { return upgradeV2(tx, now) }); err != nil {
			return fmt.Errorf("upgrade the data file from layout version 2 to 3: %w", err)
		}
		version = 3
	}
	if version == 3 {
		// (A file that cannot be written stays version 3 and opens for reading: checkRequired.)
		_ = db.Update(upgradeV3)
	}
	if missing {
		if err := db.Update(initBuckets); err != nil && db.View(checkRequired) != nil {
			// (An initialised file that only lacks later buckets opens without them.)
			return err
		}
	}
	if noIdemIndex || upgrading || version == 1 || version == 2 {
		// An upgrade may have created idx_idem empty (and crashed after). Every run already stored joins the new index, in the transaction that creates it.
		// (A file that cannot be written opens without it, as above.)
		_ = db.Update(func(tx *bbolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(bucketIdxIdem); err != nil {
				return err
			}
			return backfillIdemIndex(tx)
		})
	}
	return db.View(checkRequired)
}

// checkRequired reports whether the file has every required bucket and this layout version.
func checkRequired(tx *bbolt.Tx) error {
	for _, name := range requiredBuckets() {
		if tx.Bucket(name) == nil {
			return errNotInitialised
		}
	}
	v := tx.Bucket(bucketMeta).Get(metaSchema)
	if v == nil {
		return errNotInitialised
	}
	// Version 3 differs only by idx_status and idx_scope, which nothing here reads: one that could not be
	// upgraded (a read-only file) is still read correctly.
	if got := u64(v); got != schemaVersion && got != 3 {
		return fmt.Errorf("data file has layout version %d, this pushbackd knows %d", got, schemaVersion)
	}
	return nil
}

func initBuckets(tx *bbolt.Tx) error {
	for _, name := range allBuckets() {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(metaSchema); v != nil {
		if got := u64(v); got != schemaVersion {
			return fmt.Errorf("data file has layout version %d, this pushbackd knows %d", got, schemaVersion)
		}
		return nil
	}
	return meta.Put(metaSchema, be64(schemaVersion))
}

// wrapIOError marks failures of the disk or file system as ErrUnavailable: the process
// cannot fix them, an operator can.
func wrapIOError(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	var errno syscall.Errno
	if errors.Is(err, fs.ErrPermission) || errors.As(err, &errno) || errors.Is(err, bolterrors.ErrDatabaseReadOnly) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// Path is the data file's path.
func (b *Store) Path() string { return b.path }

// Stats reports the writer's counters.
func (b *Store) Stats() Stats {
	st := b.db.Stats()
	return Stats{Commits: b.commits.Load(), Writes: b.writes.Load(), Pages: uint64(st.TxStats.GetWrite())}
}

// Close commits the writes already queued, refuses new ones with ErrClosed, waits for
// reads in progress and closes the file. Closing twice is harmless.
func (b *Store) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.queue)
	b.mu.Unlock()
	<-b.stopped
	b.prealloc.close()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", b.path, err)
	}
	return nil
}

// writeReq is one write waiting for a commit. fn runs inside the shared transaction. It
// must report outcomes the caller branches on (not found, duplicate) through its own
// closure and return nil having written nothing; a non-nil error means the transaction
// may be half-written, and the batch is redone one request per transaction.
type writeReq struct {
	ctx  context.Context
	fn   func(tx *bbolt.Tx) error
	done chan error
}

// write queues fn for the next commit and waits until it is durable.
func (b *Store) write(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return store.ErrClosed
	}
	select {
	case b.queue <- req:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The write may still commit; callers treat an error as "maybe written", which
		// idempotency keys and at-least-once steps already allow.
		return ctx.Err()
	}
}

func (b *Store) writer() {
	defer close(b.stopped)
	batch := make([]*writeReq, 0, b.maxBatch)
	var timer *time.Timer
	for {
		first, ok := <-b.queue
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		open := b.gather(&batch, &timer)
		b.commit(batch)
		if !open {
			// Close closed the queue while we gathered: drain the rest, then stop.
			for req := range b.queue {
				b.commit([]*writeReq{req})
			}
			return
		}
	}
}

// gather adds queued requests to batch: everything already waiting, then whatever arrives
// within maxDelay of the first. It reports false when the queue was closed.
func (b *Store) gather(batch *[]*writeReq, timer **time.Timer) bool {
	for len(*batch) < b.maxBatch {
		select {
		case req, ok := <-b.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, req)
			continue
		default:
		}
		break
	}
	if b.maxDelay <= 0 || len(*batch) >= b.maxBatch {
		return true
	}
	if *timer == nil {
		*timer = time.NewTimer(b.maxDelay)
	} else {
		(*timer).Reset(b.maxDelay)
	}
	defer (*timer).Stop()
	for len(*batch) < b.maxBatch {
		select {
		case req, ok := <-b.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, req)
		case <-(*timer).C:
			return true
		}
	}
	return true
}

// commit runs the batch in one transaction. When a request's fn fails the transaction is
// discarded and each request is redone alone, so one bad write cannot sink the others.
func (b *Store) commit(batch []*writeReq) {
	live := batch[:0:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.done <- err // nothing written for a caller that gave up before its turn
			continue
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	if len(live) > 1 {
		err := b.tx(func(tx *bbolt.Tx) error {
			for _, req := range live {
				if err := req.fn(tx); err != nil {
					return errFnFailed
				}
			}
			return nil
		}, len(live))
		if !errors.Is(err, errFnFailed) {
			for _, req := range live {
				req.done <- err
			}
			return
		}
	}
	for _, req := range live {
		req.done <- b.tx(req.fn, 1)
	}
}

var errFnFailed = errors.New("a write in the batch failed")

func (b *Store) tx(fn func(tx *bbolt.Tx) error, n int) error {
	tx, err := b.db.Begin(true)
	if err != nil {
		return fmt.Errorf("store: begin write: %w", wrapIOError(err))
	}
	b.prealloc.extend(tx)
	packAppends(tx)
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", wrapIOError(err))
	}
	b.commits.Add(1)
	b.writes.Add(uint64(n))
	return nil
}

// appendFill is the split point for buckets whose keys arrive in ascending order. bbolt
// splits a full page at FillPercent (0.5 by default), which suits random inserts; here
// every new key lands at the right edge of the bucket (or of its scope's or status's key
// range), so half-empty pages would stay half empty. Packing them full cuts the pages a
// commit writes and fsyncs: BenchmarkAcceptThenFinish went from 32.5 to 28 pages per
// commit, and the index buckets of a bench data file from 50% to 92-98% full. Runs are
// 0.9, not 1.0: their records grow when the outcome is written, and a full page would
// split for that.
const (
	appendFill = 1.0
	runsFill   = 0.9
)

// packAppends sets the fill of the append-ordered buckets for this transaction: a Bucket's
// FillPercent is not stored in the file, and tx.Bucket returns the same handle for the
// rest of the transaction.
func packAppends(tx *bbolt.Tx) {
	for _, name := range [...][]byte{bucketBodies, bucketIdxStatusScope, bucketIdemExp, bucketKVExp} {
		if bk := tx.Bucket(name); bk != nil {
			bk.FillPercent = appendFill
		}
	}
	if bk := tx.Bucket(bucketRuns); bk != nil {
		bk.FillPercent = runsFill
	}
}

// view runs a read transaction; it holds the close lock so Close waits for it.
func (b *Store) view(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return store.ErrClosed
	}
	return b.db.View(fn)
}

// Check verifies the file: bbolt's own page checks, then that every index entry, count,
// queue entry and idempotency key agrees with the runs bucket and the other way round, and that saga
// versions decode, match their hashes and are numbered without gaps. The crash tests
// call it after kill -9.
func (b *Store) Check() error {
	return b.view(context.Background(), func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() { // drained fully: the checker goroutine reads the tx
			if len(errs) < 20 {
				errs = append(errs, err)
			}
		}
		errs = append(errs, checkIndexes(tx)...)
		var qerrs []error
		checkQueue(tx, func(format string, args ...any) {
			if len(qerrs) < 50 {
				qerrs = append(qerrs, fmt.Errorf(format, args...))
			}
		})
		errs = append(errs, qerrs...)
		errs = append(errs, checkSagaVersions(tx)...)
		return errors.Join(errs...)
	})
}
