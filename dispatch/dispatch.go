// Package dispatch runs accepted pushbacks: it records each run durably before the sender
// is answered, queues it for a bounded pool of workers, checkpoints every step, and on start
// resumes whatever a crash interrupted. Debounce and retry waits are stored wake-up times,
// so they survive restarts; serialize_by keys run one at a time in arrival order.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/internal/jsonenc"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// ErrQueueFull means the queue holds QueueSize runs waiting for a worker: the gateway
// answers 503 with Retry-After instead of growing without bound. Nothing was stored.
var ErrQueueFull = errors.New("dispatch: the run queue is full")

// ErrStopped means the dispatcher is shutting down and takes no new runs.
var ErrStopped = errors.New("dispatch: stopped")

// Engine is the part of the saga engine the dispatcher drives.
type Engine interface {
	Resume(ctx context.Context, inv *saga.Invocation, st *saga.State) *saga.Result
}

// Clock schedules wake-ups. Tests use a fake one, so no test sleeps through a wait.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Observer hears about finished runs and store latency, for metrics.
type Observer interface {
	RunFinished(res *saga.Result)
	StoreCommit(op string, d time.Duration)
}

type noObserver struct{}

func (noObserver) RunFinished(*saga.Result)          {}
func (noObserver) StoreCommit(string, time.Duration) {}

// Options are the dispatcher's collaborators and limits.
type Options struct {
	Observer Observer // nil: nobody listens
	Store    store.Runs
	// Rebuild makes the invocation of a stored run under the current configuration; it is
	// how runs resume after a restart (the request is parsed again from the stored bytes).
	Rebuild   func(run *store.Run) (*saga.Invocation, error)
	Logger    *zap.Logger
	Clock     Clock
	Workers   int // runs executing at once; default 64
	QueueSize int // runs waiting for a worker before accepts are refused; default 10000
}

// Dispatcher owns the run queue.
type Dispatcher struct {
	o      Options
	engine Engine
	log    *zap.Logger

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []*job                 // ready to execute, in arrival order
	reserved int                    // accepts between their capacity check and their commit
	timers   map[string]func() bool // waiting runs' wake-ups, by run id
	dropped  map[string]bool        // superseded while queued or waiting: skip when popped
	serial   map[string][]*job      // serialize_by key -> runs parked behind the running one
	busy     map[string]bool        // serialize_by keys with a run executing
	active   map[string]*job        // executing runs, for checkpoints
	// filing holds a slot per async outcome being written after its worker moved on;
	// a full channel makes workers wait, so a slow disk slows them instead of piling
	// finished runs up in memory.
	filing  chan struct{}
	stopped bool
	workers sync.WaitGroup
	running sync.WaitGroup
}

// job is one run on its way through the dispatcher. While it executes, only its worker
// touches run.
type job struct {
	run   *store.Run
	inv   *saga.Invocation // nil after a restart until Rebuild makes it
	state *saga.State
	// started: the stored record already says running with this attempt (a sync run just
	// created), so execute need not write it again.
	started bool
	// lateFinish: record the outcome after returning it. A sync sender waits for the
	// saga's answer, not for the write that files it away; a crash in between finds the
	// run unfinished and runs it again from its last checkpoint (at least once). (Async
	// outcomes are written after the worker moves on too, bounded by Dispatcher.filing.)
	lateFinish bool
}

// New makes a dispatcher; Start gives it its engine and starts the workers. The engine is
// passed late because it needs the dispatcher as its Checkpointer.
func New(o Options) *Dispatcher {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	d := &Dispatcher{o: o, log: o.Logger, timers: map[string]func() bool{}, dropped: map[string]bool{},
		serial: map[string][]*job{}, busy: map[string]bool{}, active: map[string]*job{},
		filing: make(chan struct{}, 4*o.Workers)}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Start resumes every unfinished run in the store and starts the workers.
func (d *Dispatcher) Start(ctx context.Context, engine Engine) error {
	d.engine = engine
	runs, err := d.o.Store.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("load unfinished runs: %w", err)
	}
	d.mu.Lock()
	for _, r := range runs {
		j := &job{run: r}
		if len(r.State) > 0 {
			j.state = new(saga.State)
			if err := json.Unmarshal(r.State, j.state); err != nil {
				d.log.Error("unreadable checkpoint; the run restarts from its first step", zap.String("run_id", r.ID), zap.Error(err))
				j.state = nil
			}
		}
		if r.Status == store.StatusWaiting && r.WakeAt.After(d.o.Clock.Now()) {
			d.scheduleLocked(j, r.WakeAt)
		} else {
			d.queue = append(d.queue, j)
		}
	}
	d.mu.Unlock()
	if len(runs) > 0 {
		d.log.Info("resuming unfinished runs", zap.Int("runs", len(runs)))
	}
	for range d.o.Workers {
		d.workers.Add(1)
		go d.work()
	}
	d.cond.Broadcast()
	return nil
}

// Stop takes no new runs and lets the executing ones finish within ctx. Runs still queued or
// waiting stay in the store and resume at the next start; a run cut off by ctx stays
// "running" there and resumes from its last checkpoint.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.mu.Lock()
	d.stopped = true
	for id, stop := range d.timers {
		stop()
		delete(d.timers, id)
	}
	d.mu.Unlock()
	d.cond.Broadcast()
	done := make(chan struct{})
	go func() { d.workers.Wait(); d.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("runs still executing at shutdown (they resume at the next start): %w", ctx.Err())
	}
}

// QueueDepth is the number of runs waiting for a worker.
func (d *Dispatcher) QueueDepth() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue)
}

// Accept records an async run durably and queues it; it returns once the run is on disk,
// so the caller may answer 2xx. With an idempotency or message key already taken it
// stores nothing and returns the original run's id. A saga with debounce makes the run
// wait (superseding an older waiting run with the same key); one with serialize_by gets
// its key.
func (d *Dispatcher) Accept(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (duplicateOf string, err error) {
	run.Mode, run.Status = "async", store.StatusQueued
	if err := d.keys(run, inv); err != nil {
		return "", err
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return "", ErrStopped
	}
	if run.Status == store.StatusQueued && len(d.queue)+d.reserved >= d.o.QueueSize {
		d.mu.Unlock()
		return "", ErrQueueFull
	}
	d.reserved++
	d.mu.Unlock()

	res, err := d.create(ctx, run, opts)

	d.mu.Lock()
	defer d.mu.Unlock()
	d.reserved--
	if err != nil {
		return "", err
	}
	if res.DuplicateOf != "" {
		return res.DuplicateOf, nil
	}
	for _, id := range res.Superseded {
		if stop, ok := d.timers[id]; ok {
			stop()
			delete(d.timers, id)
		}
		d.dropped[id] = true
	}
	j := &job{run: run, inv: inv}
	if run.Status == store.StatusWaiting {
		d.scheduleLocked(j, run.WakeAt)
	} else {
		d.queue = append(d.queue, j)
		d.cond.Signal()
	}
	return "", nil
}

// keys renders the saga's debounce and serialize_by keys. A debounce key is scoped to the
// endpoint the run arrived at, or as wide as the saga's debounce.scope says, so a sender
// holding one endpoint's credentials cannot supersede another endpoint's runs. serialize_by
// keys are scoped to partner and saga: they only order runs, and a partner may want its
// sites' events about one loan in one line.
func (d *Dispatcher) keys(run *store.Run, inv *saga.Invocation) error {
	s := inv.Saga
	scope := inv.Partner.ID + "/" + s.Name + "/"
	if s.Debounce != nil {
		k, err := s.Debounce.Key.Render(inv)
		if err != nil {
			return fmt.Errorf("debounce key: %w", err)
		}
		run.DebounceKey = store.DebounceKey(debounceScope(run, s.Debounce.Scope), s.Name, k)
		run.Status = store.StatusWaiting
		run.WakeAt = run.ReceivedAt.Add(s.Debounce.Wait)
	}
	if s.SerializeBy != nil {
		k, err := s.SerializeBy.Render(inv)
		if err != nil {
			return fmt.Errorf("serialize_by key: %w", err)
		}
		run.SerializeKey = scope + k
	}
	return nil
}

// debounceScope is the KeyScope of a run's debounce key under the saga's debounce.scope.
func debounceScope(run *store.Run, sc saga.Scope) store.KeyScope {
	k := store.KeyScope{Partner: run.Partner, Site: run.Site, Endpoint: run.Endpoint}
	switch sc {
	case saga.ScopeSite:
		k.Endpoint = store.AnyEndpoint
	case saga.ScopePartner:
		k.Site, k.Endpoint = store.AnySite, store.AnyEndpoint
	}
	return k
}

// RunSync records a run and executes it while the caller waits. debounce and serialize_by
// do not apply: the sender is waiting for this run's answer.
func (d *Dispatcher) RunSync(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (res *saga.Result, duplicateOf string, err error) {
	// Recorded as already running, attempt 1: the run starts right after the commit, so a
	// second write to say so would only cost an fsync.
	run.Mode, run.Status, run.Attempt = "sync", store.StatusRunning, 1
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil, "", ErrStopped
	}
	d.running.Add(1)
	d.mu.Unlock()
	defer d.running.Done()
	if inv.Saga.Pure() {
		return d.runPure(ctx, run, inv, opts)
	}
	cr, err := d.create(ctx, run, opts)
	if err != nil {
		return nil, "", err
	}
	if cr.DuplicateOf != "" {
		return nil, cr.DuplicateOf, nil
	}
	return d.execute(ctx, &job{run: run, inv: inv, started: true, lateFinish: true}), "", nil
}

// runPure executes a pure saga (saga.Saga.Pure) first and then records the run once, in its
// final state, before the caller answers. One fsync'd write instead of two (a create
// before and an outcome after), and the answer now waits for a record that is complete.
// A crash before the write leaves no record, but also no effect: the sender, which has no
// answer, sends again. An idempotency key is claimed by that same write, so of concurrent
// duplicates exactly one is recorded and the others answer as duplicates of it; their
// pure runs leave nothing behind.
func (d *Dispatcher) runPure(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (*saga.Result, string, error) {
	log := d.log.With(zap.String("run_id", run.ID), zap.String("partner", run.Partner), zap.String("saga", run.Saga))
	res := d.engine.Resume(ctx, inv, nil)
	d.recordOutcome(run, res)
	cr, err := d.create(context.WithoutCancel(ctx), run, opts)
	if err != nil {
		return nil, "", err
	}
	if cr.DuplicateOf != "" {
		return nil, cr.DuplicateOf, nil
	}
	d.o.Observer.RunFinished(res)
	log.Info("run finished", zap.String("status", res.Status), zap.Int("attempt", run.Attempt))
	return res, "", nil
}

func (d *Dispatcher) create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error) {
	start := time.Now()
	res, err := d.o.Store.Create(ctx, run, opts)
	d.o.Observer.StoreCommit("create", time.Since(start))
	return res, err
}

func (d *Dispatcher) update(ctx context.Context, run *store.Run) error {
	start := time.Now()
	err := d.o.Store.Update(ctx, run)
	d.o.Observer.StoreCommit("update", time.Since(start))
	return err
}

func (d *Dispatcher) scheduleLocked(j *job, at time.Time) {
	id := j.run.ID
	d.timers[id] = d.o.Clock.AfterFunc(at.Sub(d.o.Clock.Now()), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if _, ok := d.timers[id]; !ok || d.stopped {
			return // superseded or stopping: the store has it
		}
		delete(d.timers, id)
		d.queue = append(d.queue, j)
		d.cond.Signal()
	})
}

func (d *Dispatcher) work() {
	defer d.workers.Done()
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.stopped {
			d.cond.Wait()
		}
		if d.stopped {
			d.mu.Unlock()
			return
		}
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		if d.dropped[j.run.ID] {
			delete(d.dropped, j.run.ID)
			d.mu.Unlock()
			continue
		}
		if key := j.run.SerializeKey; key != "" {
			if d.busy[key] {
				d.serial[key] = append(d.serial[key], j)
				d.mu.Unlock()
				continue
			}
			d.busy[key] = true
		}
		d.running.Add(1)
		d.mu.Unlock()

		d.execute(context.Background(), j)
		d.release(j.run.SerializeKey)
		d.running.Done()
	}
}

// release hands a serialize_by key to the next parked run, at the front of the queue: it
// arrived before anything queued since.
func (d *Dispatcher) release(key string) {
	if key == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	parked := d.serial[key]
	if len(parked) == 0 {
		delete(d.busy, key)
		delete(d.serial, key)
		return
	}
	next := parked[0]
	d.serial[key] = parked[1:]
	delete(d.busy, key)
	d.queue = append([]*job{next}, d.queue...)
	d.cond.Signal()
}

// execute runs one job to its end and records the outcome.
func (d *Dispatcher) execute(ctx context.Context, j *job) *saga.Result {
	r := j.run
	log := d.log.With(zap.String("run_id", r.ID), zap.String("partner", r.Partner), zap.String("saga", r.Saga))
	if j.inv == nil {
		inv, err := d.o.Rebuild(r)
		if err != nil {
			log.Error("cannot resume run", zap.Error(err))
			res := &saga.Result{RunID: r.ID, Saga: r.Saga, Status: saga.StatusFailed, Error: "cannot resume: " + err.Error()}
			d.finish(ctx, j, res, log)
			return res
		}
		j.inv = inv
	}
	if !j.started {
		r.Attempt++
		r.Status, r.WakeAt = store.StatusRunning, time.Time{}
		if j.state != nil && j.state.WaitUntil.After(d.o.Clock.Now()) {
			r.Status, r.WakeAt = store.StatusWaiting, j.state.WaitUntil
		}
		r.UpdatedAt = d.o.Clock.Now()
		// A first attempt needs no write of its own to say it started — its first checkpoint
		// or its outcome says so, and a crash before either finds it queued and runs it
		// again — which saves an fsync per run. A debounced run does write: that write is how
		// it learns it was superseded meanwhile. A resumed run writes so its attempt count
		// survives another crash.
		if r.Attempt > 1 || r.DebounceKey != "" || r.Status == store.StatusWaiting {
			if err := d.update(ctx, r); errors.Is(err, store.ErrFinal) {
				log.Info("run already final; not running it", zap.Error(err))
				return &saga.Result{RunID: r.ID, Saga: r.Saga, Status: string(store.StatusSuperseded)}
			} else if err != nil {
				log.Warn("cannot record that the run started", zap.Error(err))
			}
		}
	}
	d.mu.Lock()
	d.active[r.ID] = j
	d.mu.Unlock()
	res := d.engine.Resume(ctx, j.inv, j.state)
	d.mu.Lock()
	delete(d.active, r.ID)
	d.mu.Unlock()
	switch {
	case j.lateFinish:
		d.finishLater(ctx, j, res, log, func() {})
	case r.SerializeKey == "":
		// An async worker does not wait for its run's outcome to be committed either: the
		// wait is a commit or two, as long as the saga itself when the downstream is fast,
		// and nothing the worker does next depends on it. A crash before the commit finds
		// the run unfinished and runs it again (at least once).
		d.filing <- struct{}{}
		d.finishLater(ctx, j, res, log, func() { <-d.filing })
	default:
		// The next run of a serialize_by key must not start before this outcome is durable.
		d.finish(ctx, j, res, log)
	}
	return res
}

// finishLater records the outcome on its own goroutine, then calls done. The caller is
// counted in d.running (a worker or RunSync), so adding to it here cannot race Stop's Wait.
func (d *Dispatcher) finishLater(ctx context.Context, j *job, res *saga.Result, log *zap.Logger, done func()) {
	d.running.Add(1) // Stop waits for the outcome to be written
	go func() {
		defer d.running.Done()
		defer done()
		d.finish(context.WithoutCancel(ctx), j, res, log)
	}()
}

func (d *Dispatcher) finish(ctx context.Context, j *job, res *saga.Result, log *zap.Logger) {
	r := j.run
	d.recordOutcome(r, res)
	// The outcome must be recorded even when the caller's context has ended.
	if err := d.update(context.WithoutCancel(ctx), r); errors.Is(err, store.ErrFinal) {
		log.Info("run was superseded while it ran; its outcome is not recorded", zap.Error(err))
		return
	} else if err != nil {
		log.Error("cannot record the run's outcome; it will run again at the next start", zap.Error(err))
		return
	}
	d.o.Observer.RunFinished(res)
	log.Info("run finished", zap.String("status", res.Status), zap.Int("attempt", r.Attempt))
}

// recordOutcome puts a finished saga's result into its run record.
func (d *Dispatcher) recordOutcome(r *store.Run, res *saga.Result) {
	now := d.o.Clock.Now()
	r.Status, r.Error = store.Status(res.Status), res.Error
	r.FinishedAt, r.UpdatedAt, r.WakeAt = now, now, time.Time{}
	r.State = nil // the result supersedes the checkpoint
	if b, err := res.AppendJSON(nil); err == nil {
		r.Result = b
	}
	if r.Mode == "sync" && res.Answer != nil {
		if b, err := jsonenc.AppendValue(nil, res.Answer.Body); err == nil {
			r.Answer = &store.Answer{Status: res.Answer.Status, Body: b}
		}
	}
}

// Checkpoint stores a run's progress after each step and before each retry wait, so a
// restart resumes from the first unfinished step and keeps the wait's due time.
func (d *Dispatcher) Checkpoint(ctx context.Context, st *saga.State) error {
	d.mu.Lock()
	j, ok := d.active[st.RunID]
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("checkpoint for run %s, which is not executing here", st.RunID)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	r := j.run
	r.State, r.UpdatedAt = b, d.o.Clock.Now()
	r.Status, r.WakeAt = store.StatusRunning, time.Time{}
	if !st.WaitUntil.IsZero() {
		r.Status, r.WakeAt = store.StatusWaiting, st.WaitUntil
	}
	return d.update(context.WithoutCancel(ctx), r)
}

var _ saga.Checkpointer = (*Dispatcher)(nil)
