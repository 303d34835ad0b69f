// Package dispatch runs accepted pushbacks: it records each run durably before the sender
// is answered, and a bounded pool of workers claims due runs from the store, executes them
// under leases, checkpoints every step and records the outcome.
//
// The store holds what is runnable and when; the dispatcher holds only what it executes.
// Queued runs, debounce waits, retry waits (a run suspends instead of sleeping in its
// worker), runs parked behind their serialize_by key, and runs a crash interrupted are all
// rows in the store's due-time index, so they survive restarts and cost no memory here. One
// timer, set to the earliest due time the last claim saw, and a nudge on every accept and
// every freed worker tell the pool when to claim.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/internal/jsonenc"
	"github.com/pushbackd/pushbackd/internal/warm"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// ErrQueueFull means the store holds QueueSize runnable runs (queued or waiting): the
// gateway answers 503 with Retry-After instead of growing without bound. Nothing was stored.
var ErrQueueFull = errors.New("dispatch: the run queue is full")

// ErrStopped means the dispatcher is shutting down and takes no new runs.
var ErrStopped = errors.New("dispatch: stopped")

// errShutdown and errLeaseLost are why a worker's run is interrupted.
var (
	errShutdown  = fmt.Errorf("%w: shutting down", saga.ErrInterrupted)
	errLeaseLost = fmt.Errorf("%w: %w", saga.ErrInterrupted, store.ErrLeaseLost)
)

// Engine is the part of the saga engine the dispatcher drives.
type Engine interface {
	Resume(ctx context.Context, inv *saga.Invocation, st *saga.State) *saga.Result
}

// Store is what the dispatcher needs of the store: it creates runs and works the queue.
type Store interface {
	Create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error)
	store.Queue
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
	// RunFinished hears of a run that reached a final status; partner and endpoint are
	// the ones that accepted it (a replay or retry keeps its original's).
	RunFinished(partner, endpoint string, res *saga.Result)
	StoreCommit(op string, d time.Duration)
	// Duplicate hears of a request answered as a duplicate (its idempotency key or its
	// message id named a run already accepted): nothing was recorded for it.
	Duplicate(partner, endpoint string)
	// Superseded hears of n runs of saga that a newer run with their debounce key ended:
	// they never run, so RunFinished never hears of them. partner and endpoint are the
	// newer run's: the same as theirs unless the saga's debounce scope is site or partner,
	// where the endpoint may differ (the store names only their ids).
	Superseded(partner, endpoint, saga string, n int)
}

type noObserver struct{}

func (noObserver) RunFinished(string, string, *saga.Result) {}
func (noObserver) StoreCommit(string, time.Duration)        {}
func (noObserver) Duplicate(string, string)                 {}
func (noObserver) Superseded(string, string, string, int)   {}

// DefaultLeaseTTL is how long a worker's hold on a run lasts without renewal. Workers renew
// every third of it; a process that dies leaves its runs to others (with a shared store)
// when it passes. The embedded store hands a dead process's runs out at its next start
// without waiting.
const DefaultLeaseTTL = 30 * time.Second

// Options are the dispatcher's collaborators and limits.
type Options struct {
	Observer Observer // nil: nobody listens
	Store    Store
	// Rebuild makes the invocation of a stored run under the current configuration; it is
	// how claimed runs execute (the request is parsed again from the stored bytes).
	Rebuild   func(run *store.Run) (*saga.Invocation, error)
	Logger    *zap.Logger
	Clock     Clock
	Workers   int           // runs executing at once; default 64
	QueueSize int           // runnable runs in the store before accepts are refused; default 10000
	LeaseTTL  time.Duration // default DefaultLeaseTTL
	// HandoffWait is how long an async accept waits for a busy worker to free up before it
	// queues its run in the store, unless workers freed up (for accepts ahead of it, or
	// for the store's backlog) in that time: then it waits on, HandoffWait after
	// HandoffWait, up to handoffWaitsAtMost of them. Default DefaultHandoffWait.
	HandoffWait time.Duration
	Owner       string // this process in leases; default a fresh UUID
	// Tracing makes a span per run attempt, a child of the request's span (carried in
	// store.Run.TraceParent); nil: no tracing.
	Tracing trace.TracerProvider
	// SyncAnswer is the answer a sync run's sender gets when the saga gave none of its own
	// (the gateway's 200 or 502); the run records it. Nil: only a saga's own answer is.
	SyncAnswer func(runID, sagaName string, res *saga.Result) *saga.Answer
}

// Dispatcher owns the worker pool.
type Dispatcher struct {
	o      Options
	engine Engine
	log    *zap.Logger
	tracer trace.Tracer // nil: tracing off

	mu          sync.Mutex
	free        int             // workers neither executing nor promised a run
	active      map[string]*job // executing runs: for checkpoints and lease renewal
	stopped     bool            // no more accepts or claims
	interrupted bool            // Stop's grace period is over: runs are given up
	timerAt     time.Time       // when the claim timer fires; zero: no timer
	stopTimer   func() bool
	stopRenew   func() bool
	// waiters are accepts waiting for a worker to free up, oldest first: each is sent true
	// when a worker is handed to it, false when the dispatcher stops. Waiting briefly costs
	// the sender a little latency; queueing instead costs the run a claim (a write and a
	// read of its request back), and lets accepts outrun the workers until the queue is
	// full and senders get 503s. waitingBodies sums the request bodies they hold.
	waiters       []waiter
	waitingBodies int
	// stalled: an accept waited HandoffWait without a single worker freeing up meanwhile;
	// until one does, accepts queue at once instead of each waiting out the same stall.
	stalled bool
	// freed counts the workers returned to the pool, so a waiter that gives up can tell a
	// stall from a busy pool whose freed workers went to others.
	freed uint64
	// The store may hold due runs no worker here has claimed (a backlog, hasBacklog) while
	// pokes, counting the pokes, is ahead of settled, the count when the last claim that
	// found fewer due runs than it had workers for began. A poke during a claim is not
	// lost, and a backlog lasts through the claims that serve it. Meanwhile freed workers
	// take turns (waiterTurn) between the claimer and the waiting accepts, and an accept
	// never takes a free worker: queued and woken runs are not starved by new ones, and new
	// ones do not all wait out HandoffWait and queue behind them, which would turn every
	// run into a claim until the backlog is gone.
	pokes, settled atomic.Uint64
	waiterTurn     bool // the next worker freed while there is a backlog goes to a waiter

	// claimFailing: the last claim failed and said so in the log; the claimer alone uses
	// it, so an outage (or a store still opening) is one error line, not two a second.
	claimFailing bool

	jobs  chan *job     // claimed runs for the workers; never blocks (free counts its room)
	nudge chan struct{} // "claim now", for the claimer
	quit  chan struct{} // closed by Stop: the claimer returns
	// filing holds a slot per async outcome being written after its worker moved on; a
	// full channel makes workers wait, so a slow disk slows them instead of piling finished
	// runs up in memory.
	filing chan struct{}
	// filers write those outcomes on goroutines whose stacks an earlier write already grew.
	filers  *warm.Pool
	claimer sync.WaitGroup
	workers sync.WaitGroup
	running sync.WaitGroup // sync runs and outcome writes in flight
	handoff sync.WaitGroup // accepts between promising a worker a run and handing it over
}

// job is one run a worker (or a sync request) executes. Only its goroutine touches run.
type job struct {
	run   *store.Run
	lease store.Lease
	inv   *saga.Invocation // nil for a claimed run until Rebuild makes it
	// cancel interrupts the run (saga.ErrInterrupted as the cause): at the end of Stop's
	// grace period, or when its lease is lost.
	cancel context.CancelCauseFunc
	// lateFinish: record the outcome after returning it. A sync sender waits for the
	// saga's answer, not for the write that files it away; a crash in between finds the
	// run unfinished and runs it again from its last checkpoint (at least once). (Async
	// outcomes are written after the worker moves on too, bounded by Dispatcher.filing.)
	lateFinish bool
	// suspended: its last checkpoint suspended the run, so the store holds it as waiting
	// and the lease is gone.
	suspended bool
	// cancelled: an operator cancelled the run (store.Run.CancelRequested, read at the
	// claim or from a checkpoint's Save); the engine asks it before each step.
	cancelled atomic.Bool
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
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.HandoffWait <= 0 {
		o.HandoffWait = DefaultHandoffWait
	}
	if o.Owner == "" {
		o.Owner = uuid.NewString()
	}
	d := &Dispatcher{o: o, log: o.Logger, free: o.Workers, active: map[string]*job{},
		jobs: make(chan *job, o.Workers), nudge: make(chan struct{}, 1), quit: make(chan struct{}),
		filing: make(chan struct{}, 4*o.Workers), filers: warm.New(10 * time.Second)}
	if o.Tracing != nil {
		d.tracer = o.Tracing.Tracer("github.com/pushbackd/pushbackd/dispatch")
	}
	return d
}

// Start starts the workers; they claim whatever the store holds that is due, including
// runs a crash interrupted.
func (d *Dispatcher) Start(ctx context.Context, engine Engine) error {
	d.engine = engine
	n, err := d.o.Store.Runnable(ctx)
	if err != nil {
		return fmt.Errorf("read the run queue: %w", err)
	}
	if n > 0 {
		d.log.Info("runs waiting in the store", zap.Int("runs", n))
	}
	for range d.o.Workers {
		d.workers.Add(1)
		go d.work()
	}
	d.claimer.Add(1)
	go d.claimLoop()
	d.listenNotifications()
	d.mu.Lock()
	d.scheduleRenewLocked()
	d.mu.Unlock()
	d.poke()
	return nil
}

// Stop takes no new runs and stops claiming, then waits for the executing runs to finish
// until ctx ends (the grace period). Runs still executing then are interrupted: their
// contexts are cancelled, they stop without compensating or recording an outcome, and their
// leases are released, so the next start resumes them from their last checkpoint. Stop
// returns only once every worker and every sync run has returned, so the store may close
// after it. Queued and waiting runs stay in the store.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	for _, w := range d.waiters {
		w.handed <- false
	}
	d.waiters, d.waitingBodies = nil, 0
	if d.stopTimer != nil {
		d.stopTimer()
		d.stopTimer, d.timerAt = nil, time.Time{}
	}
	d.mu.Unlock()
	close(d.quit)
	d.claimer.Wait()
	d.handoff.Wait()
	close(d.jobs) // nothing sends any more: workers drain what they were promised, then return
	done := make(chan struct{})
	go func() { d.workers.Wait(); d.running.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		d.mu.Lock()
		d.interrupted = true
		n := len(d.active)
		for _, j := range d.active {
			j.cancel(errShutdown)
		}
		d.mu.Unlock()
		<-done
		err = &InterruptedError{Runs: n, cause: ctx.Err()}
	}
	d.mu.Lock()
	if d.stopRenew != nil {
		d.stopRenew()
	}
	d.stopRenew = nil
	d.mu.Unlock()
	return err
}

// InterruptedError is Stop's report of the runs still executing when its grace ran out:
// interrupted, not failed, they resume from their last checkpoint at the next start. A
// graceful stop may end so; whoever stops the process decides whether that is a failure.
type InterruptedError struct {
	Runs  int
	cause error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("%d runs still executing at shutdown were interrupted (they resume from their last checkpoint at the next start): %v", e.Runs, e.cause)
}

func (e *InterruptedError) Unwrap() error { return e.cause }

// QueueDepth is the number of runnable runs in the store: queued or waiting, parked ones
// included. It is what QueueSize bounds.
func (d *Dispatcher) QueueDepth() int {
	n, err := d.o.Store.Runnable(context.Background())
	if err != nil {
		d.log.Warn("cannot read the queue depth", zap.Error(err))
	}
	return n
}

// QueueLimit is how many runnable runs the store may hold before accepts are refused.
func (d *Dispatcher) QueueLimit() int { return d.o.QueueSize }

// Accept records an async run durably and returns once it is on disk, so the caller may
// answer 2xx. With an idempotency or message key already taken it stores nothing and
// returns the original run's id. A saga with debounce makes the run wait (superseding an
// older waiting run with the same key); one with serialize_by gets its key. When a worker is
// free and the run is due at once, it is created already claimed and handed to that worker,
// with its request still in memory: no second write and no second read. A pure saga's run
// due at once is executed here and recorded finished (see accept).
func (d *Dispatcher) Accept(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (duplicateOf string, err error) {
	return d.accept(ctx, run, inv, opts, true)
}

// AcceptReplay is Accept for a run an operator asked for again (a replay or a retry): the
// saga's debounce does not apply, so it neither waits nor supersedes, nor can a later
// replay supersede it — the operator asked for each one. Idempotency applies only to the
// key the caller sets (a bulk replay job's own), never to the sender's. serialize_by
// still orders it behind unfinished runs with its key.
func (d *Dispatcher) AcceptReplay(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (duplicateOf string, err error) {
	return d.accept(ctx, run, inv, opts, false)
}

func (d *Dispatcher) accept(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions, debounce bool) (duplicateOf string, err error) {
	run.Mode, run.Status = "async", store.StatusQueued
	if err := d.keys(run, inv, debounce); err != nil {
		return "", err
	}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return "", ErrStopped
	}
	// A pure saga's run due at once needs no worker: like a sync one (runPure) it is
	// executed first and recorded once, finished, before the sender's 2xx — one fsync'd
	// write instead of a create and an outcome (and a claim, when no worker was free). A
	// crash before that write leaves nothing to resume or undo, and the sender, without a
	// 2xx, sends again. It never queues, so limits.queue does not count it. A debounced or
	// serialize_by run waits its turn in the store as any other.
	if inv.Saga.Pure() && run.Status == store.StatusQueued && run.SerializeKey == "" {
		d.running.Add(1)
		d.mu.Unlock()
		defer d.running.Done()
		// Not on the request's context: a sender that hangs up mid-run must not turn the
		// run into a failure (a sync run is detached the same way, by the gateway).
		_, dup, err := d.runPure(context.WithoutCancel(ctx), run, inv, opts)
		return dup, err
	}
	due := run.Status == store.StatusQueued
	take := d.free > 0 && due && !d.hasBacklog() // with a backlog, free workers are the claimer's
	var handed chan bool
	switch {
	case take:
		d.free--
		d.handoff.Add(1)
	case due && !d.stalled && len(d.waiters) < maxWaitersPerWorker*d.o.Workers &&
		d.waitingBodies+len(run.Request.Body) <= maxWaitingBodies:
		// It waits even while the store holds a backlog, whose runs get every other freed
		// worker: answering at once would let a sender that posts as fast as it is
		// answered fill the store's queue faster than the workers drain it, until every
		// post is refused. Waiting is the backpressure that lets the backlog drain.
		handed = make(chan bool, 1)
		d.waiters = append(d.waiters, waiter{handed: handed, body: len(run.Request.Body)})
		d.waitingBodies += len(run.Request.Body)
	}
	freed := d.freed
	d.mu.Unlock()
	if handed != nil {
		var err error
		if take, err = d.awaitWorker(ctx, handed, freed); err != nil {
			return "", err
		}
	}

	opts.MaxRunnable = d.o.QueueSize
	if take {
		opts.Owner, opts.LeaseTTL = d.o.Owner, d.o.LeaseTTL
	}
	res, err := d.create(ctx, run, opts)
	if take {
		if err == nil && res.Lease != nil {
			d.jobs <- &job{run: run, inv: inv, lease: *res.Lease}
		} else {
			d.workerFreed()
		}
		d.handoff.Done()
	}
	switch {
	case errors.Is(err, store.ErrFull):
		return "", fmt.Errorf("%w: %w", ErrQueueFull, err)
	case err != nil:
		return "", err
	case res.DuplicateOf != "":
		return res.DuplicateOf, nil
	case res.Lease == nil && run.Status == store.StatusWaiting:
		d.wakeAt(run.WakeAt)
	case res.Lease == nil:
		d.poke()
	}
	return "", nil
}

// DefaultHandoffWait is how long an accept waits for a worker to free up before it queues
// its run in the store instead. Long enough for a busy pool to reach an accept far back
// in the line (a sender with hundreds of connections, each posting again as soon as it is
// answered, keeps that many accepts waiting: with 20 ms, 256 connections outran 64 workers,
// filled the store's queue and got 503s for a quarter of their posts), short enough to add
// little to an answer when the pool is stalled: a wait in which no worker frees up at all
// makes the accepts after it queue at once (see Dispatcher.stalled).
const DefaultHandoffWait = 100 * time.Millisecond

// handoffWaitsAtMost bounds how many HandoffWaits an accept waits in all while the pool
// makes progress (500 ms by default). A sender with more connections than the pool serves
// in one HandoffWait (64 workers serve ~1,000 runs in 100 ms) is slowed to the pool's
// pace instead of having its runs queued: 1,024 connections against 64 workers otherwise
// filled the store's queue within seconds and got 503s for every other post.
const handoffWaitsAtMost = 5

// The accepts waiting for a worker are bounded, in number and in the request bodies they
// hold in memory (a run in the store holds none). The number is about as many as a busy
// pool frees within HandoffWait (64 workers on runs of a few milliseconds free a thousand
// or more); one further back would wait it out and queue anyway. Past either bound an
// accept queues its run at once.
const (
	maxWaitersPerWorker = 16
	maxWaitingBodies    = 16 << 20
)

// waiter is an accept waiting for a worker: it is sent true when one is handed to it,
// false when the dispatcher stops. body is the size of the request body it holds.
type waiter struct {
	handed chan bool
	body   int
}

// awaitWorker waits for a worker to be handed to the accept that queued handed among the
// waiters: true when one was (d.handoff counts it), false when none came in time or the
// sender went away (the run is queued in the store instead), ErrStopped when the
// dispatcher stopped meanwhile (nothing was stored). freed is d.freed when it started.
// It waits HandoffWait at a time, on while some worker freed up in the last one, up to
// handoffWaitsAtMost in all.
func (d *Dispatcher) awaitWorker(ctx context.Context, handed chan bool, freed uint64) (bool, error) {
	t := time.NewTimer(d.o.HandoffWait)
	defer t.Stop()
	for waits := 1; ; waits++ {
		select {
		case ok := <-handed:
			if !ok {
				return false, ErrStopped
			}
			return true, nil
		case <-ctx.Done():
			d.mu.Lock()
			gone := d.leaveLineLocked(handed)
			d.mu.Unlock()
			return leftLine(handed, gone)
		case <-t.C:
		}
		d.mu.Lock()
		stalled := d.freed == freed // not one worker freed up in this wait
		freed = d.freed
		if !stalled && waits < handoffWaitsAtMost {
			d.mu.Unlock()
			t.Reset(d.o.HandoffWait)
			continue
		}
		gone := d.leaveLineLocked(handed)
		if gone && stalled {
			d.stalled = true
		}
		d.mu.Unlock()
		return leftLine(handed, gone)
	}
}

// leaveLineLocked takes the accept that queued handed off the waiters; false when it is no
// longer among them (a worker was handed to it, or the dispatcher stopped). Caller holds
// d.mu.
func (d *Dispatcher) leaveLineLocked(handed chan bool) bool {
	i := slices.IndexFunc(d.waiters, func(w waiter) bool { return w.handed == handed })
	if i < 0 {
		return false
	}
	d.waitingBodies -= d.waiters[i].body
	d.waiters = slices.Delete(d.waiters, i, i+1)
	return true
}

// leftLine is awaitWorker's result once the accept gave up waiting: no worker when it
// left the line, else what was sent to it meanwhile.
func leftLine(handed chan bool, gone bool) (bool, error) {
	if gone {
		return false, nil
	}
	if !<-handed {
		return false, ErrStopped
	}
	return true, nil
}

// workerFreed returns a worker to the pool (see returnWorkers).
func (d *Dispatcher) workerFreed() { d.returnWorkers(1) }

// returnWorkers returns n workers to the pool: to the oldest waiting accepts, the rest to
// the free pool. While the store may hold due runs (backlog), the waiters get every other
// worker and the claimer, nudged, the others and the rest.
//
// Turns, not the backlog first: a sender with more connections than the pool serves
// within HandoffWait kept a line of waiters that, once any run was queued, all waited
// out HandoffWait behind the backlog and queued in turn, so every run cost a claim too
// and the queue filled (64 workers, 1,024 connections: 6,300 runs/s, every second post
// refused once the queue was full).
func (d *Dispatcher) returnWorkers(n int) {
	if n == 0 {
		return
	}
	d.mu.Lock()
	d.stalled = false
	d.freed += uint64(n)
	backlog := d.hasBacklog()
	k := min(n, len(d.waiters))
	if backlog && k > 0 {
		share := n / 2
		if n%2 == 1 {
			if d.waiterTurn {
				share++
			}
			d.waiterTurn = !d.waiterTurn
		}
		k = min(k, share)
	}
	for _, w := range d.waiters[:k] {
		d.handoff.Add(1)
		d.waitingBodies -= w.body
		w.handed <- true
	}
	// Off the front by reslicing, not by shifting up to a thousand waiters under the lock
	// for every freed worker; append reuses the room, or copies only the rest.
	clear(d.waiters[:k])
	d.waiters = d.waiters[k:]
	n -= k
	d.free += n
	d.mu.Unlock()
	if backlog && n > 0 {
		d.nudgeClaimer()
	}
}

// keys renders the saga's debounce and serialize_by keys. A debounce key is scoped to the
// endpoint the run arrived at, or as wide as the saga's debounce.scope says, so a sender
// holding one endpoint's credentials cannot supersede another endpoint's runs. serialize_by
// keys are scoped to partner and saga: they only order runs, and a partner may want its
// sites' events about one loan in one line.
func (d *Dispatcher) keys(run *store.Run, inv *saga.Invocation, debounce bool) error {
	s := inv.Saga
	scope := inv.Partner.ID + "/" + s.Name + "/"
	// Replays and retries (AcceptReplay) come with debounce false: an operator asked for
	// that run, so a debounce window must not supersede it, nor hold it back.
	if s.Debounce != nil && debounce {
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
// do not apply: the sender is waiting for this run's answer. A wait that ends after
// inv.SleepUntil (the gateway sets it to the sender's deadline) suspends the run: RunSync
// returns saga.StatusWaiting and a worker finishes the run later, as an async one.
func (d *Dispatcher) RunSync(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (res *saga.Result, duplicateOf string, err error) {
	run.Mode, run.Status = "sync", store.StatusQueued
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
	// Created claimed, running, attempt 1: the run starts right after the commit, so a
	// second write to say so would only cost an fsync.
	opts.Owner, opts.LeaseTTL = d.o.Owner, d.o.LeaseTTL
	cr, err := d.create(ctx, run, opts)
	if err != nil {
		return nil, "", err
	}
	if cr.DuplicateOf != "" {
		return nil, cr.DuplicateOf, nil
	}
	if cr.Lease == nil { // cannot happen: a sync run has no serialize_by key to wait behind
		return nil, "", fmt.Errorf("sync run %s was not created claimed", run.ID)
	}
	return d.execute(ctx, &job{run: run, inv: inv, lease: *cr.Lease, lateFinish: true}), "", nil
}

// runPure executes a pure saga (saga.Saga.Pure) first and then records the run once, in its
// final state, before the caller answers. One fsync'd write instead of two (a create
// before and an outcome after), and the answer now waits for a record that is complete.
// A crash before the write leaves no record, but also no effect: the sender, which has no
// answer, sends again. An idempotency key is claimed by that same write, so of concurrent
// duplicates exactly one is recorded and the others answer as duplicates of it; their
// pure runs leave nothing behind.
func (d *Dispatcher) runPure(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (*saga.Result, string, error) {
	// WithLazy: the fields are encoded only if a line is written, and at the usual levels
	// most runs write none.
	log := d.log.WithLazy(zap.String("run_id", run.ID), zap.String("partner", run.Partner), zap.String("saga", run.Saga))
	run.Attempt = 1
	ctx, end := d.startAttempt(ctx, run, &log)
	res := d.engine.Resume(ctx, inv, nil)
	end(res)
	d.recordOutcome(run, res)
	cr, err := d.create(context.WithoutCancel(ctx), run, opts)
	if err != nil {
		return nil, "", err
	}
	if cr.DuplicateOf != "" {
		return nil, cr.DuplicateOf, nil
	}
	d.o.Observer.RunFinished(run.Partner, run.Endpoint, res)
	log.Info("run finished", zap.String("status", res.Status), zap.Int("attempt", run.Attempt))
	return res, "", nil
}

func (d *Dispatcher) create(ctx context.Context, run *store.Run, opts store.CreateOptions) (store.CreateResult, error) {
	start := time.Now()
	res, err := d.o.Store.Create(ctx, run, opts)
	d.o.Observer.StoreCommit("create", time.Since(start))
	// Every create passes here, sync or async, pure or not: the one place to count what the
	// store decided in the create's transaction.
	if err == nil && res.DuplicateOf != "" {
		d.o.Observer.Duplicate(run.Partner, run.Endpoint)
	}
	if err == nil && len(res.Superseded) > 0 {
		// A debounce key holds the saga's name, so the runs it superseded are of run's saga.
		d.o.Observer.Superseded(run.Partner, run.Endpoint, run.Saga, len(res.Superseded))
	}
	return res, err
}

func (d *Dispatcher) save(ctx context.Context, run *store.Run, lease store.Lease) error {
	start := time.Now()
	err := d.o.Store.Save(ctx, run, lease)
	d.o.Observer.StoreCommit("save", time.Since(start))
	return err
}

// poke asks the claimer to claim now: something may be due in the store.
func (d *Dispatcher) poke() {
	d.pokes.Add(1)
	d.nudgeClaimer()
}

// hasBacklog reports whether the store may hold due runs no worker here has claimed.
func (d *Dispatcher) hasBacklog() bool { return d.pokes.Load() != d.settled.Load() }

func (d *Dispatcher) nudgeClaimer() {
	select {
	case d.nudge <- struct{}{}:
	default: // a nudge is pending already
	}
}

// wakeAt makes sure the claimer claims at t: at once when t has passed, else by the one
// timer, moved earlier when t comes first. A later t keeps the earlier timer: when it
// fires, the claim reports the next due time again.
func (d *Dispatcher) wakeAt(t time.Time) {
	if t.IsZero() {
		return
	}
	now := d.o.Clock.Now()
	if !t.After(now) {
		d.poke()
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || (d.stopTimer != nil && !d.timerAt.After(t)) {
		return
	}
	if d.stopTimer != nil {
		d.stopTimer()
	}
	d.timerAt = t
	d.stopTimer = d.o.Clock.AfterFunc(t.Sub(now), func() {
		d.mu.Lock()
		if d.timerAt.Equal(t) {
			d.stopTimer, d.timerAt = nil, time.Time{}
		}
		d.mu.Unlock()
		d.poke()
	})
}

// claimRetry is how long the claimer waits after a failed claim (a disk error) before it
// tries again.
const claimRetry = time.Second

func (d *Dispatcher) claimLoop() {
	defer d.claimer.Done()
	for {
		select {
		case <-d.quit:
			return
		case <-d.nudge:
		}
		d.claim()
	}
}

// claim takes due runs for the free workers, as many as are free, until none are due or
// none are free, then sets the timer for the next due time.
func (d *Dispatcher) claim() {
	for {
		d.mu.Lock()
		n := d.free
		if d.stopped {
			n = 0
		}
		d.free -= n
		d.mu.Unlock()
		if n == 0 {
			return // the backlog stays: a worker that frees up nudges again
		}
		// Read before the claim: a poke while it runs (a run queued meanwhile) keeps the
		// backlog even when this claim comes back short.
		pokes := d.pokes.Load()
		start := time.Now()
		res, err := d.o.Store.Claim(context.Background(), d.o.Owner, n, d.o.LeaseTTL)
		if len(res.Runs) > 0 {
			d.o.Observer.StoreCommit("claim", time.Since(start))
		}
		if err != nil {
			// The workers go back without a nudge: the timer claims again, not a loop.
			d.mu.Lock()
			d.free += n
			d.mu.Unlock()
			if !d.claimFailing {
				d.log.Error("cannot claim runs; trying again shortly (logged once until a claim works)", zap.Error(err))
			}
			d.claimFailing = true
			d.wakeAt(d.o.Clock.Now().Add(claimRetry))
			return
		}
		if d.claimFailing {
			d.claimFailing = false
			d.log.Info("claiming runs again")
		}
		if len(res.Runs) < n {
			d.settled.Store(pokes) // only the claimer writes it, and pokes only grow
		}
		d.returnWorkers(n - len(res.Runs)) // to waiting accepts, if any
		for _, c := range res.Runs {
			d.jobs <- &job{run: c.Run, lease: c.Lease}
		}
		if len(res.Runs) < n || res.Next.IsZero() || res.Next.After(d.o.Clock.Now()) {
			d.wakeAt(res.Next)
			return
		}
	}
}

func (d *Dispatcher) work() {
	defer d.workers.Done()
	for j := range d.jobs {
		d.execute(context.Background(), j)
		d.workerFreed()
	}
}

// scheduleRenewLocked arms the renewal of the leases of every executing run, every third
// of the lease's life, on the dispatcher's clock. Caller holds d.mu.
func (d *Dispatcher) scheduleRenewLocked() {
	d.stopRenew = d.o.Clock.AfterFunc(d.o.LeaseTTL/3, func() {
		d.renew()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.stopRenew != nil {
			d.scheduleRenewLocked()
		}
	})
}

// renew extends the leases of the executing runs in one write; a run whose lease was lost
// (another process took it after this one stalled past its lease) is interrupted.
func (d *Dispatcher) renew() {
	d.mu.Lock()
	leases := make([]store.Lease, 0, len(d.active))
	for _, j := range d.active {
		leases = append(leases, j.lease)
	}
	d.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	start := time.Now()
	lost, err := d.o.Store.Renew(context.Background(), leases, d.o.LeaseTTL)
	d.o.Observer.StoreCommit("renew", time.Since(start))
	if err != nil {
		d.log.Warn("cannot renew the leases of executing runs", zap.Error(err))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range lost {
		if j := d.active[id]; j != nil {
			d.log.Warn("lost the lease of an executing run; another worker owns it now", zap.String("run_id", id))
			j.cancel(errLeaseLost)
		}
	}
}

// execute runs one job until it ends or suspends, and records the outcome.
func (d *Dispatcher) execute(parent context.Context, j *job) *saga.Result {
	r := j.run
	log := d.log.WithLazy(zap.String("run_id", r.ID), zap.String("partner", r.Partner), zap.String("saga", r.Saga))
	parent, end := d.startAttempt(parent, r, &log)
	var res *saga.Result
	defer func() { end(res) }()
	if j.inv == nil {
		inv, err := d.o.Rebuild(r)
		if err != nil {
			log.Error("cannot resume run", zap.Error(err))
			res = &saga.Result{RunID: r.ID, Saga: r.Saga, Status: saga.StatusFailed, Error: "cannot resume: " + err.Error()}
			d.finish(parent, j, res, log)
			return res
		}
		j.inv = inv
	}
	// A run that has started is never superseded (store.Supersedable), so every wait,
	// compensation waits included, may free the worker.
	j.inv.Suspend, j.inv.Attempt = true, r.Attempt
	if r.CancelRequested {
		j.cancelled.Store(true)
	}
	j.inv.Cancelled = j.cancelled.Load
	var state *saga.State
	if len(r.State) > 0 {
		state = new(saga.State)
		if err := json.Unmarshal(r.State, state); err != nil {
			log.Error("unreadable checkpoint; the run restarts from its first step", zap.Error(err))
			state = nil
		}
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	j.cancel = cancel
	d.mu.Lock()
	d.active[r.ID] = j
	if d.interrupted {
		cancel(errShutdown)
	}
	d.mu.Unlock()
	res = d.engine.Resume(ctx, j.inv, state)
	d.mu.Lock()
	delete(d.active, r.ID)
	d.mu.Unlock()

	switch res.Status {
	case saga.StatusWaiting:
		if !j.suspended {
			log.Warn("the run's suspension was not recorded; it resumes when its lease expires")
			return res
		}
		log.Debug("run suspended", zap.Time("until", res.WakeAt))
		d.wakeAt(res.WakeAt)
		return res
	case saga.StatusInterrupted:
		err := d.o.Store.Release(context.WithoutCancel(ctx), j.lease)
		if err != nil && !errors.Is(err, store.ErrLeaseLost) {
			log.Warn("cannot release an interrupted run; it resumes when its lease expires", zap.Error(err))
		}
		log.Info("run interrupted; it resumes from its last checkpoint", zap.Error(context.Cause(ctx)))
		return res
	}
	// A worker does not wait for its run's outcome to be committed: the wait is a commit or
	// two, as long as the saga itself when the downstream is fast, and nothing it does next
	// depends on it. A crash before the commit finds the run unfinished and runs it again
	// (at least once). The next run of a serialize_by key waits for the commit anyway: the
	// store parks it until then.
	if !j.lateFinish {
		d.filing <- struct{}{}
	}
	d.running.Add(1) // Stop waits for the outcome to be written
	d.filers.Go(func() {
		defer d.running.Done()
		if !j.lateFinish {
			defer func() { <-d.filing }()
		}
		d.finish(context.WithoutCancel(ctx), j, res, log)
		if r.SerializeKey != "" {
			d.poke() // the key's next run is due now
		}
	})
	return res
}

func (d *Dispatcher) finish(ctx context.Context, j *job, res *saga.Result, log *zap.Logger) {
	r := j.run
	d.recordOutcome(r, res)
	// The outcome must be recorded even when the caller's context has ended.
	if err := d.save(context.WithoutCancel(ctx), r, j.lease); errors.Is(err, store.ErrLeaseLost) {
		log.Warn("the run's lease was lost before its outcome was recorded; the worker that holds it now records its own", zap.Error(err))
		return
	} else if err != nil {
		log.Error("cannot record the run's outcome; it runs again from its last checkpoint", zap.Error(err))
		return
	}
	d.o.Observer.RunFinished(r.Partner, r.Endpoint, res)
	log.Info("run finished", zap.String("status", res.Status), zap.Int("attempt", r.Attempt))
}

// recordOutcome puts a finished saga's result into its run record.
func (d *Dispatcher) recordOutcome(r *store.Run, res *saga.Result) {
	now := d.o.Clock.Now()
	r.Status, r.Error = store.Status(res.Status), res.Error
	r.FinishedAt, r.UpdatedAt, r.WakeAt = now, now, time.Time{}
	r.State = nil // the result supersedes the checkpoint
	// Sized from the steps, so a short run's result fits without growing: the bench's
	// one-step run writes ~250 bytes, its three-step one with an answer ~1,000.
	if b, err := res.AppendJSON(make([]byte, 0, 128+320*len(res.Steps))); err == nil {
		r.Result = b
	}
	answer := res.Answer
	if r.Mode == "sync" && answer == nil && d.o.SyncAnswer != nil {
		// The gateway computes the same answer from the same result to send it; res is
		// not written to, since the gateway may be reading it while this runs.
		answer = d.o.SyncAnswer(r.ID, r.Saga, res)
	}
	if r.Mode == "sync" && answer != nil {
		if answer.BodyJSON != nil {
			r.Answer = &store.Answer{Status: answer.Status, Body: answer.BodyJSON}
		} else if b, err := jsonenc.AppendValue(make([]byte, 0, 256), answer.Body); err == nil {
			r.Answer = &store.Answer{Status: answer.Status, Body: b}
		}
	}
}

// Checkpoint stores a run's progress after each step and before each retry wait, under the
// run's lease. A wait the run suspends through (saga.Invocation.Suspends) is written as the
// run waiting until then, which releases the lease: the store wakes the run. A wait slept in
// place keeps the run running, and the wait in its state.
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
	suspend := !st.WaitUntil.IsZero() && j.inv.Suspends(st.WaitUntil)
	if suspend {
		r.Status, r.WakeAt = store.StatusWaiting, st.WaitUntil
	}
	err = d.save(context.WithoutCancel(ctx), r, j.lease)
	if r.CancelRequested {
		j.cancelled.Store(true) // the run stops before its next step
	}
	switch {
	case err == nil && suspend:
		j.suspended = true
	case errors.Is(err, store.ErrLeaseLost):
		j.cancel(errLeaseLost)
	}
	return err
}

var _ saga.Checkpointer = (*Dispatcher)(nil)
