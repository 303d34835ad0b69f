package dispatch

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
)

// fakeClock fires AfterFunc callbacks only when advanced past their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves time on and fires what is due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	keep := c.timers[:0]
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			due = append(due, t)
		} else if !t.stopped {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}

// Sleep makes fakeClock a saga.Clock that never waits: a wait the dispatcher has already
// served (by scheduling the run at its stored time) needs no second one.
func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

func mustSaga(t *testing.T, src string) *saga.Saga {
	t.Helper()
	name := strings.TrimSpace(strings.SplitN(strings.TrimPrefix(src, "name:"), "\n", 2)[0])
	s, errs := saga.Parse(name+".yaml", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	return s
}

// stopped is a dispatcher Clock whose timers never fire: a dispatcher on it claims only when
// nudged and never renews a lease, as a process that hangs would.
type stopped struct{ *fakeClock }

func (stopped) AfterFunc(time.Duration, func()) func() bool { return func() bool { return true } }

// testStore is the store a rig runs on: the memory store, or a bbolt file.
type testStore interface {
	Store
	store.KV
	GetRun(ctx context.Context, id string) (*store.Run, error)
	List(ctx context.Context, f store.Filter) ([]*store.Run, string, error)
}

type rig struct {
	t     *testing.T
	store testStore
	clock *fakeClock
	sagas map[string]*saga.Saga
	d     *Dispatcher
}

func newRig(t *testing.T, st testStore, clock *fakeClock, engineClock saga.Clock, workers, queue int, sagas ...*saga.Saga) *rig {
	t.Helper()
	return newRigOn(t, st, st, clock, engineClock, workers, queue, sagas...)
}

// newRigOn is newRig with the dispatcher's store calls going through runs (a wrapper of st).
func newRigOn(t *testing.T, runs Store, st testStore, clock Clock, engineClock saga.Clock, workers, queue int, sagas ...*saga.Saga) *rig {
	t.Helper()
	return startRig(t, Options{Store: runs, Clock: clock, Workers: workers, QueueSize: queue}, st, engineClock, sagas...)
}

// startRig starts a dispatcher with options o (Store, Clock and limits set by the caller)
// over st.
func startRig(t *testing.T, o Options, st testStore, engineClock saga.Clock, sagas ...*saga.Saga) *rig {
	t.Helper()
	r := &rig{t: t, store: st, sagas: map[string]*saga.Saga{}}
	switch c := o.Clock.(type) {
	case *fakeClock:
		r.clock = c
	case stopped:
		r.clock = c.fakeClock
	}
	for _, s := range sagas {
		r.sagas[s.Name] = s
	}
	if o.Logger == nil {
		o.Logger = zaptest.NewLogger(t)
	}
	o.Rebuild = func(run *store.Run) (*saga.Invocation, error) {
		return r.invocation(run.ID, run.Saga, run.Request.Body), nil
	}
	r.d = New(o)
	eng := saga.NewEngine(saga.EngineOptions{Logger: zaptest.NewLogger(t), KV: st, Clock: engineClock, Checkpointer: r.d,
		Egress: saga.EgressPolicy{Allow: []string{"127.0.0.1"}}, Jitter: func(d time.Duration) time.Duration { return d }})
	if err := r.d.Start(context.Background(), eng); err != nil {
		t.Fatal(err)
	}
	return r
}

// now is the rig's time: its fake clock's, or the real one.
func (r *rig) now() time.Time {
	if r.clock != nil {
		return r.clock.Now()
	}
	return time.Now()
}

func (r *rig) invocation(id, sagaName string, body []byte) *saga.Invocation {
	return &saga.Invocation{RunID: id, Saga: r.sagas[sagaName], Partner: saga.Ref{ID: "acme"}, Endpoint: "e",
		Settings: map[string]any{}, Request: saga.Request{Method: "POST", Raw: body, Body: map[string]any{"loan": string(body)}, ReceivedAt: r.now()}}
}

// newRun is a run of sagaName whose body (and loan key) is body, and its invocation, as the
// gateway makes them.
func (r *rig) newRun(sagaName, body, idemKey string) (*store.Run, *saga.Invocation) {
	id := uuid.Must(uuid.NewV7()).String()
	run := &store.Run{ID: id, Partner: "acme", Endpoint: "e", Saga: sagaName, SagaVersion: r.sagas[sagaName].Version,
		ReceivedAt: r.now(), IdempotencyKey: idemKey, Request: store.Request{Body: []byte(body)}}
	return run, r.invocation(id, sagaName, []byte(body))
}

// accept records an async run for sagaName whose body (and loan key) is body.
func (r *rig) accept(sagaName, body, idemKey string) (*store.Run, string, error) {
	run, inv := r.newRun(sagaName, body, idemKey)
	dup, err := r.d.Accept(context.Background(), run, inv, store.CreateOptions{IdempotencyTTL: time.Hour})
	return run, dup, err
}

// runSync runs a sync run of sagaName as the gateway does.
func (r *rig) runSync(sagaName, body, idemKey string) (*store.Run, *saga.Result, string, error) {
	run, inv := r.newRun(sagaName, body, idemKey)
	res, dup, err := r.d.RunSync(context.Background(), run, inv, store.CreateOptions{IdempotencyTTL: time.Hour})
	return run, res, dup, err
}

// oneRunPerKey sends 50 concurrent requests with one idempotency key through send, which
// returns the created run's id or the id a duplicate names, and checks that one run was
// created and the other 49 name it.
func oneRunPerKey(t *testing.T, send func() (created, duplicateOf string, err error)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, dups := map[string]bool{}, map[string]int{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, dup, err := send()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Error(err)
			case dup != "":
				dups[dup]++
			default:
				created[id] = true
			}
		}()
	}
	wg.Wait()
	if len(created) != 1 || len(dups) != 1 {
		t.Fatalf("created %d runs, duplicates point at %v", len(created), dups)
	}
	for id := range created {
		if dups[id] != 49 {
			t.Errorf("49 duplicates should name run %s: %v", id, dups)
		}
	}
}

func (r *rig) waitStatus(id string, want store.Status) *store.Run {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		run, err := r.store.GetRun(context.Background(), id)
		if err == nil && run.Status == want {
			return run
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("run %s: status %v, want %s (err %v)", id, run, want, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *rig) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.d.Stop(ctx); err != nil {
		r.t.Error(err)
	}
}

const pureSaga = `name: pure
steps:
  - {name: a, set: {x: 1}}
  - {name: answer, respond: {status: 200, body: {ok: true}}}
`

func TestAnAcceptedRunRunsAndItsOutcomeIsStored(t *testing.T) {
	clock := newFakeClock()
	r := newRig(t, memory.New(clock), clock, clock, 2, 10, mustSaga(t, pureSaga))
	defer r.stop()
	run, dup, err := r.accept("pure", "L-1", "")
	if err != nil || dup != "" {
		t.Fatalf("accept: %v %q", err, dup)
	}
	got := r.waitStatus(run.ID, store.StatusSucceeded)
	if got.Attempt != 1 || len(got.Result) == 0 || got.FinishedAt.IsZero() || len(got.State) != 0 {
		t.Errorf("stored run = %+v", got)
	}
}

// gate is a downstream that holds every request until released.
func gate(t *testing.T) (url string, release func(), hits *atomic.Int32) {
	url, release, hits, _ = recordingGate(t)
	return url, release, hits
}

// recordingGate is gate that also records the bodies it was sent, in the order they came.
func recordingGate(t *testing.T) (url string, release func(), hits *atomic.Int32, bodies func() []string) {
	t.Helper()
	ch := make(chan struct{})
	hits = new(atomic.Int32)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		hits.Add(1)
		<-ch
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() { release(); srv.Close() })
	bodies = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	return srv.URL, release, hits, bodies
}

// waitUntil polls cond until it holds, failing the test after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAFullQueueRefusesAndStoresNothing(t *testing.T) {
	url, release, hits := gate(t)
	clock := newFakeClock()
	st := memory.New(clock)
	held := mustSaga(t, "name: held\nsteps:\n  - {name: call, http: {url: \""+url+"\"}}\n")
	r := newRig(t, st, clock, clock, 1, 1, held)
	defer r.stop()
	defer release()
	first, _, err := r.accept("held", "1", "")
	if err != nil {
		t.Fatal(err)
	}
	for hits.Load() == 0 { // the only worker is now busy with the first run
		time.Sleep(time.Millisecond)
	}
	if _, _, err := r.accept("held", "2", ""); err != nil {
		t.Fatalf("the second run should wait in the queue: %v", err)
	}
	third, _, err := r.accept("held", "3", "")
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third accept: %v, want ErrQueueFull", err)
	}
	if _, err := st.GetRun(context.Background(), third.ID); err == nil {
		t.Error("a refused run was stored")
	}
	if d := r.d.QueueDepth(); d != 1 {
		t.Errorf("queue depth %d, want 1", d)
	}
	release()
	r.waitStatus(first.ID, store.StatusSucceeded)
}

func TestDuplicatesRunNothing(t *testing.T) {
	clock := newFakeClock()
	r := newRig(t, memory.New(clock), clock, clock, 4, 100, mustSaga(t, pureSaga))
	defer r.stop()
	oneRunPerKey(t, func() (string, string, error) {
		run, dup, err := r.accept("pure", "L-1", "acme/e/event-1")
		return run.ID, dup, err
	})
}

const debouncedSaga = `name: debounced
debounce: {key: "${ body.loan }", wait: 10s}
steps:
  - {name: answer, respond: {status: 200}}
`

func TestDebounceLetsTheLastEventInTheWindowRun(t *testing.T) {
	clock := newFakeClock()
	r := newRig(t, memory.New(clock), clock, clock, 2, 10, mustSaga(t, debouncedSaga))
	defer r.stop()
	first, _, _ := r.accept("debounced", "L-1", "")
	other, _, _ := r.accept("debounced", "L-2", "")
	clock.Advance(3 * time.Second)
	second, _, _ := r.accept("debounced", "L-1", "")
	if got := r.waitStatus(first.ID, store.StatusSuperseded); got.FinishedAt.IsZero() && got.Status != store.StatusSuperseded {
		t.Errorf("first = %+v", got)
	}
	if got, _ := r.store.GetRun(context.Background(), second.ID); got.Status != store.StatusWaiting {
		t.Fatalf("the newer run should wait: %s", got.Status)
	}
	clock.Advance(7 * time.Second) // L-2's window ends; L-1's newer one has 3s left
	r.waitStatus(other.ID, store.StatusSucceeded)
	if got, _ := r.store.GetRun(context.Background(), second.ID); got.Status != store.StatusWaiting {
		t.Fatalf("the newer L-1 run ran early: %s", got.Status)
	}
	clock.Advance(3 * time.Second)
	r.waitStatus(second.ID, store.StatusSucceeded)
	if got, _ := r.store.GetRun(context.Background(), first.ID); got.Status != store.StatusSuperseded {
		t.Errorf("the superseded run ran: %s", got.Status)
	}
}

func TestSerializeByRunsOneAtATimeInArrivalOrder(t *testing.T) {
	var mu sync.Mutex
	var order []string
	inFlight, maxInFlight := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		order = append(order, req.URL.Query().Get("n"))
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	defer srv.Close()
	clock := newFakeClock()
	s := mustSaga(t, `name: serial
serialize_by: "${ body.loan }"
steps:
  - {name: call, http: {url: "`+srv.URL+`?n=${ raw }"}}
`)
	r := newRig(t, memory.New(clock), clock, clock, 4, 100, s)
	defer r.stop()
	var runs []*store.Run
	for i := range 8 {
		run, _, err := r.accept("serial", string(rune('a'+i)), "")
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run)
	}
	for _, run := range runs {
		r.waitStatus(run.ID, store.StatusSucceeded)
	}
	// Each body is its own key here, so they may overlap; now one key for all.
	mu.Lock()
	order, maxInFlight = nil, 0
	mu.Unlock()
	same := mustSaga(t, `name: same
serialize_by: "one-loan"
steps:
  - {name: call, http: {url: "`+srv.URL+`?n=${ raw }"}}
`)
	r.sagas["same"] = same
	runs = nil
	for i := range 8 {
		run, _, err := r.accept("same", string(rune('a'+i)), "")
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run)
	}
	for _, run := range runs {
		r.waitStatus(run.ID, store.StatusSucceeded)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight != 1 {
		t.Errorf("%d runs with one serialize_by key ran at once", maxInFlight)
	}
	if got := fmtOrder(order); got != "abcdefgh" {
		t.Errorf("order %s, want arrival order abcdefgh", got)
	}
}

func fmtOrder(s []string) string {
	out := ""
	for _, x := range s {
		out += x
	}
	return out
}

// A retry wait suspends the run: its worker is free at once, the wait is a wake time in the
// store, and a restart during it continues at the stored time with the tries already
// made, rather than from scratch or never.
func TestARestartDuringARetryWaitResumesAtTheStoredTime(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	src := `name: retried
steps:
  - {name: first, set: {a: 1}}
  - name: call
    http: {url: "` + srv.URL + `"}
    retry: {attempts: 3, backoff: 1h}
`
	clock := newFakeClock()
	st := memory.New(clock)
	before := newRig(t, st, clock, noSleep{clock}, 1, 10, mustSaga(t, src))
	run, _, _ := before.accept("retried", "L-1", "")
	waiting := before.waitStatus(run.ID, store.StatusWaiting)
	if want := clock.Now().Add(time.Hour); !waiting.WakeAt.Equal(want) {
		t.Fatalf("stored wake-up %v, want %v", waiting.WakeAt, want)
	}
	if n := executingAfterSettling(before.d); n != 0 {
		t.Fatalf("%d runs executing during the wait, want none: the worker must be free", n)
	}
	before.stop()
	after := newRig(t, st, clock, noSleep{clock}, 1, 10, mustSaga(t, src))
	defer after.stop()
	clock.Advance(59 * time.Minute)
	time.Sleep(20 * time.Millisecond)
	if got, _ := st.GetRun(context.Background(), run.ID); got.Status != store.StatusWaiting || calls.Load() != 1 {
		t.Fatalf("resumed before its time: %s after %d calls", got.Status, calls.Load())
	}
	clock.Advance(time.Minute)
	done := after.waitStatus(run.ID, store.StatusSucceeded)
	if calls.Load() != 2 {
		t.Errorf("downstream called %d times, want 2 (one before the restart, one after)", calls.Load())
	}
	if done.Attempt != 1 {
		t.Errorf("run attempt %d, want 1: waking from a wait is not a new attempt", done.Attempt)
	}
}

// executing counts the runs d executes now.
func executing(d *Dispatcher) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.active)
}

// executingAfterSettling is executing once the workers have had up to a second to let go:
// a worker drops a run just after its store write (a suspension, an outcome) returns, so a
// test that has seen the write may look a moment too early.
func executingAfterSettling(d *Dispatcher) int {
	n := executing(d)
	for deadline := time.Now().Add(time.Second); n != 0 && time.Now().Before(deadline); n = executing(d) {
		time.Sleep(time.Millisecond)
	}
	return n
}

// noSleep is an engine clock that fails every sleep: a dispatcher's runs must never sleep
// through a wait, they suspend.
type noSleep struct{ *fakeClock }

func (noSleep) Sleep(context.Context, time.Duration) error {
	return errors.New("a worker slept through a wait")
}

func TestARestartDuringADebounceWaitRunsAtTheStoredTime(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	before := newRig(t, st, clock, clock, 1, 10, mustSaga(t, debouncedSaga))
	run, _, _ := before.accept("debounced", "L-1", "")
	before.stop()
	after := newRig(t, st, clock, clock, 1, 10, mustSaga(t, debouncedSaga))
	defer after.stop()
	clock.Advance(9 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if got, _ := st.GetRun(context.Background(), run.ID); got.Status != store.StatusWaiting {
		t.Fatalf("ran before its window closed: %s", got.Status)
	}
	clock.Advance(time.Second)
	after.waitStatus(run.ID, store.StatusSucceeded)
}

func TestStopLeavesQueuedRunsForTheNextStart(t *testing.T) {
	url, release, hits := gate(t)
	clock := newFakeClock()
	st := memory.New(clock)
	held := mustSaga(t, "name: held\nsteps:\n  - {name: call, http: {url: \""+url+"\"}}\n")
	r := newRig(t, st, clock, clock, 1, 10, held)
	first, _, _ := r.accept("held", "1", "")
	for hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second, _, _ := r.accept("held", "2", "")
	go func() { time.Sleep(20 * time.Millisecond); release() }()
	r.stop() // waits for the executing run, leaves the queued one
	r.waitStatus(first.ID, store.StatusSucceeded)
	if got, _ := st.GetRun(context.Background(), second.ID); got.Status != store.StatusQueued {
		t.Fatalf("queued run status after stop: %s", got.Status)
	}
	next := newRig(t, st, clock, clock, 1, 10, held)
	defer next.stop()
	next.waitStatus(second.ID, store.StatusSucceeded)
}

// countingRuns counts the writes that reach the store.
type countingRuns struct {
	Store
	creates, updates, claims atomic.Int32
}

func (c *countingRuns) Claim(ctx context.Context, owner string, n int, ttl time.Duration) (store.ClaimResult, error) {
	res, err := c.Store.Claim(ctx, owner, n, ttl)
	if len(res.Runs) > 0 {
		c.claims.Add(1)
	}
	return res, err
}

func (c *countingRuns) Create(ctx context.Context, run *store.Run, o store.CreateOptions) (store.CreateResult, error) {
	c.creates.Add(1)
	return c.Store.Create(ctx, run, o)
}

func (c *countingRuns) Save(ctx context.Context, run *store.Run, l store.Lease) error {
	c.updates.Add(1)
	return c.Store.Save(ctx, run, l)
}

func TestAPureSyncRunIsRecordedOnceInItsFinalStateBeforeItsAnswer(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	runs := &countingRuns{Store: st}
	r := newRigOn(t, runs, st, clock, clock, 2, 10, mustSaga(t, pureSaga))
	run, res, dup, err := r.runSync("pure", "L-1", "")
	r.stop() // and with it any write still due
	if err != nil || dup != "" || res == nil || res.Status != saga.StatusSucceeded || res.Answer == nil {
		t.Fatalf("RunSync: %+v %q %v", res, dup, err)
	}
	// Already stored when RunSync returns, which is before the gateway answers.
	got, err := st.GetRun(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusSucceeded || got.Mode != "sync" || got.Attempt != 1 || len(got.Result) == 0 ||
		got.FinishedAt.IsZero() || got.Answer == nil || string(got.Answer.Body) != `{"ok":true}` {
		t.Errorf("stored run = %+v", got)
	}
	if c, u := runs.creates.Load(), runs.updates.Load(); c != 1 || u != 0 {
		t.Errorf("%d creates and %d updates, want one create and no update", c, u)
	}
}

func TestAnAsyncRunOfAPureSagaIsRecordedOnceFinishedBeforeItsAccept(t *testing.T) {
	url, release, hits := gate(t)
	defer release()
	clock := newFakeClock()
	st := memory.New(clock)
	runs := &countingRuns{Store: st}
	held := mustSaga(t, "name: held\nsteps:\n  - {name: call, http: {url: \""+url+"\"}}\n")
	// One worker and room for one queued run, both taken by held runs below.
	r := newRigOn(t, runs, st, clock, clock, 1, 1, mustSaga(t, pureSaga), held)
	defer r.stop()

	run, dup, err := r.accept("pure", "L-1", "")
	if err != nil || dup != "" {
		t.Fatalf("accept: %v %q", err, dup)
	}
	t.Run("it is already finished when Accept returns, from one create and no save or claim", func(t *testing.T) {
		got, err := st.GetRun(context.Background(), run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.StatusSucceeded || got.Mode != "async" || got.Attempt != 1 || len(got.Result) == 0 || got.FinishedAt.IsZero() {
			t.Errorf("stored run = %+v", got)
		}
		if c, u, cl := runs.creates.Load(), runs.updates.Load(), runs.claims.Load(); c != 1 || u != 0 || cl != 0 {
			t.Errorf("%d creates, %d saves, %d claims; want one create", c, u, cl)
		}
	})
	t.Run("it needs no worker and no place in a full queue, where a saga with effects is refused", func(t *testing.T) {
		if _, _, err := r.accept("held", "1", ""); err != nil {
			t.Fatal(err)
		}
		for hits.Load() == 0 { // the only worker is busy
			time.Sleep(time.Millisecond)
		}
		if _, _, err := r.accept("held", "2", ""); err != nil { // the queue's one place
			t.Fatal(err)
		}
		if _, _, err := r.accept("held", "3", ""); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("a held run past the queue: %v, want ErrQueueFull", err)
		}
		pure, _, err := r.accept("pure", "L-2", "")
		if err != nil {
			t.Fatalf("a pure run with the queue full and no free worker: %v", err)
		}
		if got, err := st.GetRun(context.Background(), pure.ID); err != nil || got.Status != store.StatusSucceeded {
			t.Fatalf("pure run: %+v %v", got, err)
		}
	})
	t.Run("a sender that hangs up during the run does not make it fail", func(t *testing.T) {
		run, inv := r.newRun("pure", "L-4", "")
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the request's context, ended as when the sender hangs up
		if _, err := r.d.Accept(ctx, run, inv, store.CreateOptions{IdempotencyTTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if got, err := st.GetRun(context.Background(), run.ID); err != nil || got.Status != store.StatusSucceeded {
			t.Fatalf("stored run: %+v %v", got, err)
		}
	})
	t.Run("an idempotency key still makes a repeat a duplicate", func(t *testing.T) {
		first, dup, err := r.accept("pure", "L-3", "key-1")
		if err != nil || dup != "" {
			t.Fatalf("first: %v %q", err, dup)
		}
		if _, dup, err := r.accept("pure", "L-3", "key-1"); err != nil || dup != first.ID {
			t.Fatalf("repeat: %v, duplicate of %q, want %s", err, dup, first.ID)
		}
	})
	release()
}

func TestAPureSyncRunThatFailsIsRecordedFailed(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	r := newRig(t, st, clock, clock, 2, 10, mustSaga(t, "name: refuses\nsteps:\n  - {name: no, fail: {message: not today}}\n"))
	defer r.stop()
	run, res, _, err := r.runSync("refuses", "L-1", "")
	if err != nil || res.Status != saga.StatusFailed {
		t.Fatalf("RunSync: %+v %v", res, err)
	}
	if got := r.waitStatus(run.ID, store.StatusFailed); !strings.Contains(got.Error, "not today") {
		t.Errorf("stored error %q", got.Error)
	}
}

func TestASyncRunWithEffectsIsRecordedBeforeItsFirstStep(t *testing.T) {
	url, release, hits := gate(t)
	clock := newFakeClock()
	st := memory.New(clock)
	runs := &countingRuns{Store: st}
	held := mustSaga(t, "name: held\nsteps:\n  - {name: call, http: {url: \""+url+"\"}}\n")
	r := newRigOn(t, runs, st, clock, clock, 1, 1, held)
	defer r.stop()
	defer release()
	done := make(chan *store.Run, 1)
	go func() {
		run, _, _, err := r.runSync("held", "1", "")
		if err != nil {
			t.Error(err)
		}
		done <- run
	}()
	for hits.Load() == 0 { // the saga is inside its http step
		time.Sleep(time.Millisecond)
	}
	if c := runs.creates.Load(); c != 1 {
		t.Fatalf("%d creates while the http step runs, want 1", c)
	}
	release()
	run := <-done
	r.waitStatus(run.ID, store.StatusSucceeded)
}

func TestConcurrentPureSyncDuplicatesRecordOneRun(t *testing.T) {
	clock := newFakeClock()
	st := memory.New(clock)
	r := newRig(t, st, clock, clock, 4, 100, mustSaga(t, pureSaga))
	defer r.stop()
	oneRunPerKey(t, func() (string, string, error) {
		run, _, dup, err := r.runSync("pure", "L-1", "acme/e/event-1")
		return run.ID, dup, err
	})
	listed, _, err := st.List(context.Background(), store.Filter{Limit: 100})
	if err != nil || len(listed) != 1 {
		t.Errorf("stored %d runs (%v), want 1", len(listed), err)
	}
}

// heldRuns holds every outcome write (a Save of a final status) until released.
type heldRuns struct {
	Store
	release chan struct{}
	held    atomic.Int32
}

func (h *heldRuns) Save(ctx context.Context, run *store.Run, l store.Lease) error {
	if run.Status.Final() {
		h.held.Add(1)
		<-h.release
	}
	return h.Store.Save(ctx, run, l)
}

// counter is a downstream that counts its requests.
func counter(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	hits := new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

func TestAWorkerDoesNotWaitForItsOutcomeToBeWritten(t *testing.T) {
	url, hits := counter(t)
	for _, tc := range []struct {
		name, serialize string
		secondRunsFirst bool // before the first outcome is written
	}{
		{"no serialize_by", "", true},
		{"serialize_by", "serialize_by: \"${ body.loan }\"\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			clock := newFakeClock()
			st := memory.New(clock)
			runs := &heldRuns{Store: st, release: make(chan struct{})}
			call := mustSaga(t, "name: call\n"+tc.serialize+"steps:\n  - {name: c, http: {url: \""+url+"\"}}\n")
			r := newRigOn(t, runs, st, clock, clock, 1, 10, call)
			released := false
			release := func() {
				if !released {
					released = true
					close(runs.release)
				}
			}
			defer r.stop()
			defer release()
			first, _, err := r.accept("call", "L-1", "")
			if err != nil {
				t.Fatal(err)
			}
			for runs.held.Load() == 0 { // the only worker's first outcome write is held
				time.Sleep(time.Millisecond)
			}
			second, _, err := r.accept("call", "L-1", "")
			if err != nil {
				t.Fatal(err)
			}
			// Long enough for the second run on a loaded machine when it may go ahead; when
			// it must wait, the whole window passes.
			wait := 300 * time.Millisecond
			if tc.secondRunsFirst {
				wait = 5 * time.Second
			}
			deadline := time.Now().Add(wait)
			for hits.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := hits.Load() == 2; got != tc.secondRunsFirst {
				t.Fatalf("second run called the downstream while the first outcome was unwritten: %v, want %v", got, tc.secondRunsFirst)
			}
			release()
			r.waitStatus(first.ID, store.StatusSucceeded)
			r.waitStatus(second.ID, store.StatusSucceeded)
		})
	}
}
