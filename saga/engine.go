package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pushbackd/pushbackd/internal/jsonenc"
	"github.com/pushbackd/pushbackd/store"
	"go.uber.org/zap"
)

// EngineOptions configures an Engine. Zero values take the defaults documented per field.
type EngineOptions struct {
	Logger *zap.Logger // log steps and run outcomes; default: discard
	KV     store.KV    // state for kv steps, namespaced by partner id; nil fails kv steps
	// Egress is the egress list of runs whose Invocation carries none (the gateway's always
	// carry the server's and the partner's). The zero value allows public addresses only.
	Egress EgressPolicy
	// Listeners reports pushbackd's own listening addresses, which http steps never reach
	// whatever the lists allow. Called at dial time, so addresses bound after the engine
	// was built count. nil: none.
	Listeners func() []Listener
	Clock     Clock // default SystemClock()

	// MaxOutputBytes cuts recorded step inputs and outputs whose JSON is longer, so one large
	// answer cannot bloat run history. The run itself keeps the whole value. Default 64 KiB.
	MaxOutputBytes int
	// IdleConnsPerHost is how many connections to one downstream host are kept open
	// between http steps; set it to the number of runs that may call one host at once (the
	// server passes limits.workers). Default 10.
	IdleConnsPerHost int
	// MaxResponseBytes bounds how much of an http answer is read; a longer answer fails the
	// step (not retried). Default 1 MiB.
	MaxResponseBytes int64
	// KVLimits bound kv keys, values and entries per partner; zero fields take the defaults.
	KVLimits KVLimits
	// MemoryBudget bounds the list items and map entries one expression evaluation may make
	// (expr's own count, of ranges, lists, maps and repeat). Default 1e6, expr's default.
	MemoryBudget uint
	// ExprSteps is the operation budget of one expression evaluation: each loop iteration
	// costs the size of the loop's body, and each operation one step per item or 64 bytes it
	// goes through. Past it the evaluation fails its step. Default 1e6, well under a second.
	ExprSteps int64
	// ExprBytes bounds the bytes of text and lists one evaluation builds (string +, repeat,
	// join, toJSON, ...), checked before each allocation, and the size of its value written
	// out. Default 16 MiB.
	ExprBytes int64
	// CleanupTimeout bounds compensation and on_failure, which run even after the saga's
	// timeout or the caller's context has ended. It counts from the cleanup's start across
	// its suspensions: the tries and the retry waits they asked for count, so a
	// compensation cannot retry without end; a wake-up later than asked (the process was
	// down, or every worker busy) does not, and a restart after a crash starts it afresh,
	// as the forward pass's timeouts. Default 30s.
	CleanupTimeout time.Duration
	// Jitter spreads one retry wait; default "equal jitter": half the wait plus a random
	// part of the other half. Tests pass the identity to check exact waits.
	Jitter func(time.Duration) time.Duration
	// Transport, when set, carries every http step's request instead of a dialling
	// transport: `pushbackd test` serves mocked answers in-process with it, telling the
	// calls apart by CallingStep. The egress lists still vet each URL; no address is
	// dialled, so none is checked. nil: the real, egress-guarded transport.
	Transport http.RoundTripper
	// Checkpointer, when set, is given the run's state after every step and before every
	// retry wait, so a durable store can resume the run after a crash (Engine.Resume).
	Checkpointer Checkpointer
}

// Checkpointer persists a run's progress. The engine calls it on the run's goroutine; a
// failing checkpoint is logged and the run carries on (the final Result is still returned
// for the caller to record).
type Checkpointer interface {
	Checkpoint(ctx context.Context, st *State) error
}

// State is a run's progress between steps: enough to resume it where it stopped. Values
// are redacted (a secret revealed before the checkpoint reads as "<secret>" after a
// resume) but not truncated.
type State struct {
	RunID       string    `json:"run_id"`
	SagaVersion string    `json:"saga_version"`
	RunAttempt  int       `json:"run_attempt"` // run.attempt of the run that wrote it
	Started     time.Time `json:"started"`
	// Phase is the part of the run it was in. A run that left the forward pass never
	// returns to it: its failed step could succeed on a second try, and the run would end
	// succeeded with its earlier steps already undone.
	Phase Phase `json:"phase"`
	Next  int   `json:"next"` // forward: index in Saga.Steps of the first unfinished step
	// StepAttempts is the tries already made of the action in progress — Steps[Next] in the
	// forward pass, the compensation of Records[Undo] while compensating — and WaitUntil
	// when its next try is due: a retry wait is stored, so it survives a restart.
	// SagaDeadline and StepDeadline are when the saga's and the waiting step's timeouts
	// end. A run woken from a wait keeps them, so a timeout covers the whole run (all the
	// step's tries) however often it suspends; a run resumed after a crash mid-step starts
	// its timeouts afresh.
	StepAttempts int `json:"step_attempts,omitempty"`
	// StepTries and StepTriesDropped are the record of those tries (StepRecord.Tries).
	StepTries        []Try `json:"step_tries,omitempty"`
	StepTriesDropped int   `json:"step_tries_dropped,omitempty"`
	// Step and StepAction name the action those tries belong to (the step, or the step
	// whose compensation it is), for operators reading a waiting run; a resumed run goes
	// by Next and Undo, not by these.
	Step         string    `json:"step,omitempty"`
	StepAction   string    `json:"step_action,omitempty"`
	WaitUntil    time.Time `json:"wait_until,omitzero"`
	SagaDeadline time.Time `json:"saga_deadline,omitzero"`
	StepDeadline time.Time `json:"step_deadline,omitzero"`
	// CleanupDeadline is when the cleanup's CleanupTimeout ends; kept, like the others,
	// by a run woken from a wait.
	CleanupDeadline time.Time            `json:"cleanup_deadline,omitzero"`
	Vars            map[string]any       `json:"vars"`
	Steps           map[string]StepState `json:"steps"`
	Records         []StepRecord         `json:"records"`

	// Failure is why the forward pass stopped; set past the forward pass.
	Failure *Failure `json:"failure,omitempty"`
	// Undo is, while compensating, the index in Records of the next step to compensate
	// (the newest whose compensation has not finished); the rest follow down to
	// Records[0]. A compensation in flight at a crash runs again (at least once).
	Undo int `json:"undo,omitempty"`
	// Compensations are the records of the compensations that finished, in the order they
	// ran.
	Compensations []StepRecord `json:"compensations,omitempty"`
}

// Phase is the part of a run a checkpoint was written in.
type Phase string

const (
	// PhaseForward: running the steps. Checkpoints written before phases existed have
	// none and mean this.
	PhaseForward Phase = "forward"
	// PhaseCompensating: a step failed; undoing the steps that succeeded, newest first.
	PhaseCompensating Phase = "compensating"
	// PhaseOnFailure: every compensation has finished; on_failure is left.
	PhaseOnFailure Phase = "on_failure"
)

// Failure is the failed step of a run and its redacted message (error.step and
// error.message in compensations and on_failure).
type Failure struct {
	Step    string `json:"step"`
	Message string `json:"message"`
	// Cancelled: the forward pass stopped because the run was cancelled, not because
	// Step failed (Step is the step it stopped before).
	Cancelled bool `json:"cancelled,omitempty"`
	// Logged is Message for the info-level log when it differs: without a downstream's
	// answer.
	Logged string `json:"logged,omitempty"`
}

// Engine runs compiled sagas. It is safe for concurrent use; each Run is independent.
type Engine struct {
	opts       EngineOptions
	log        *zap.Logger
	clock      Clock
	transports *transports // http steps' connections, pooled per set of egress lists
	redactors  redactors   // shared by its runs: see redactors
}

// NewEngine applies defaults.
func NewEngine(o EngineOptions) *Engine {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	if o.MaxOutputBytes <= 0 {
		o.MaxOutputBytes = 64 << 10
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.MemoryBudget == 0 {
		o.MemoryBudget = defaultExprItems
	}
	if o.ExprSteps <= 0 {
		o.ExprSteps = defaultExprSteps
	}
	if o.ExprBytes <= 0 {
		o.ExprBytes = defaultExprBytes
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = 30 * time.Second
	}
	if o.IdleConnsPerHost <= 0 {
		o.IdleConnsPerHost = 10
	}
	if o.Jitter == nil {
		o.Jitter = equalJitter
	}
	return &Engine{opts: o, log: o.Logger, clock: o.Clock,
		transports: &transports{idlePerHost: o.IdleConnsPerHost, own: o.Listeners}}
}

func equalJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// backoff is the wait after the n-th failed try: Backoff doubled n-1 times, capped at
// MaxBackoff, then jittered.
func (e *Engine) backoff(r Retry, n int) time.Duration {
	d := r.Backoff
	for i := 1; i < n && d < r.MaxBackoff; i++ {
		d *= 2
	}
	if r.MaxBackoff > 0 && d > r.MaxBackoff {
		d = r.MaxBackoff
	}
	return e.opts.Jitter(d)
}

// retryAfterWait is the wait before try `next` after a 429 or 503 that carried Retry-After:
// the larger of the backoff and what the server asked, the latter capped by max_backoff (or
// maxRetryAfter when the policy has none). Waiting less than asked invites another 429;
// waiting without bound lets one downstream park runs indefinitely. why says which won, for
// the step's record.
func retryAfterWait(ra *retryAfterError, retry Retry, backoff time.Duration, next int) (wait time.Duration, why string) {
	limit, capName := maxRetryAfter, "the engine's limit"
	if retry.MaxBackoff > 0 && retry.MaxBackoff < limit {
		limit, capName = retry.MaxBackoff, "max_backoff"
	}
	asked := min(ra.after, limit)
	if backoff > asked {
		return backoff, fmt.Sprintf("try %d after %s: backoff, longer than Retry-After: %s", next, backoff, ra.header)
	}
	why = fmt.Sprintf("try %d after %s as Retry-After: %s asked", next, asked, ra.header)
	if asked < ra.after {
		why = fmt.Sprintf("try %d after %s: Retry-After: %s, capped at %s %s", next, asked, ra.header, capName, limit)
	}
	return asked, why
}

// permanentError marks a failure that retrying cannot fix: a template that does not render,
// a 4xx answer, an egress refusal, a fail action.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// timeoutError is a deadline that ran out: one request's, a step's or the saga's. A type,
// so the sender can be told "timed out" without being shown what was waited for.
type timeoutError struct {
	what  string // "step", "saga", or "" for one request
	after time.Duration
}

func timedOut(what string, after time.Duration) error { return &timeoutError{what: what, after: after} }

func (e *timeoutError) Error() string {
	return strings.TrimSpace(e.what + " timed out after " + e.after.String())
}

// inputError is a step's condition or an action's arguments failing to evaluate.
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// senderMessage is what the sender of a sync request is told about the step that failed
// the run: its name and a generic reason. The details — the downstream URL and port, its
// answer, a dial error — would let a sender map what pushbackd can reach and read what it
// should not; they go to the run record and the log. A fail action's message is the
// saga author's own words for the sender, so it is sent as written.
func senderMessage(step string, a *Action, err error) string {
	var fe *failError
	if errors.As(err, &fe) {
		return fe.msg
	}
	var te *timeoutError
	var ie *inputError
	reason := "it did not complete"
	switch {
	case errors.As(err, &te) || errors.Is(err, context.DeadlineExceeded):
		reason = "timed out"
	case errors.As(err, &ie):
		reason = "an expression could not be evaluated"
	case a.Kind == KindHTTP:
		reason = "the downstream call failed"
	case a.Kind == KindKV:
		reason = "the kv operation failed"
	}
	return "step " + step + " failed: " + reason
}

// Run runs the saga of inv from its first step.
func (e *Engine) Run(ctx context.Context, inv *Invocation) *Result {
	return e.Resume(ctx, inv, nil)
}

// Resume runs the saga of inv from st, a checkpoint of an earlier attempt of the same run;
// nil st starts from the first step. A run checkpointed while compensating or in
// on_failure continues there and never runs a forward step again. A checkpoint of another
// version of the saga is refused: its step indexes and outputs may not fit the new steps
// (resume a run on the version it started with).
func (e *Engine) Resume(ctx context.Context, inv *Invocation, st *State) (res *Result) {
	if inv == nil || inv.Saga == nil {
		return &Result{Status: StatusFailed, Error: "no saga to run"}
	}
	r := e.newRun(inv)
	defer func() {
		// A bug in one run must not take the gateway down with it.
		if p := recover(); p != nil {
			e.log.Error("saga run panicked", append(r.logFields(), zap.Any("panic", p), zap.Stack("stack"))...)
			res = r.res
			res.Status, res.Error = StatusFailed, "internal error in the saga engine"
		}
	}()
	if st != nil {
		if st.SagaVersion != "" && st.SagaVersion != inv.Saga.Version {
			r.res.Status = StatusFailed
			r.res.Error = fmt.Sprintf("saga %s changed since the run was checkpointed (version %s, now %s)", inv.Saga.Name, st.SagaVersion, inv.Saga.Version)
			return r.res
		}
		r.restore(st)
	}
	return r.execute(ctx)
}

// run is one execution of a saga.
type run struct {
	e   *Engine
	inv *Invocation
	s   *Saga
	rs  *runState
	env *Env
	ev  *evaluator
	log *zap.Logger
	res *Result

	next         int
	stepAttempts int
	waitUntil    time.Time
	// tries and triesDropped record the tries of the action in progress (State.StepTries).
	tries        []Try
	triesDropped int

	phase Phase
	fail  *failure // set once the forward pass stopped
	undo  int      // while compensating: State.Undo
	// sagaDeadline is when the saga's timeout ends (zero: none yet); stepDeadline when the
	// timeout of the step (or compensation) in progress does; cleanupDeadline when the
	// cleanup's does.
	sagaDeadline, stepDeadline, cleanupDeadline time.Time
}

func (e *Engine) newRun(inv *Invocation) *run {
	rs := newRunState(inv.Secrets)
	rs.cache = &e.redactors
	env := newEnv(inv, rs)
	r := &run{
		e: e, inv: inv, s: inv.Saga, rs: rs, env: env,
		ev: newEvaluator(env, exprLimits{steps: e.opts.ExprSteps, bytes: e.opts.ExprBytes, items: e.opts.MemoryBudget}),
		res: &Result{
			RunID: inv.RunID, Saga: inv.Saga.Name, SagaVersion: inv.Saga.Version,
			Started: e.clock.Now(),
		},
	}
	r.log = e.log.WithLazy(r.logFields()...) // encoded only if the run writes a line
	if inv.Attempt > 0 {
		env.Run.Attempt = inv.Attempt
	}
	return r
}

func (r *run) logFields() []zap.Field {
	f := []zap.Field{zap.String("run_id", r.inv.RunID), zap.String("saga", r.s.Name), zap.String("partner", r.inv.Partner.ID)}
	if r.inv.Site != nil {
		f = append(f, zap.String("site", r.inv.Site.ID))
	}
	return append(f, zap.String("endpoint", r.inv.Endpoint))
}

func (r *run) restore(st *State) {
	r.env.Vars = maps.Clone(st.Vars)
	if r.env.Vars == nil {
		r.env.Vars = map[string]any{}
	}
	r.env.Steps = maps.Clone(st.Steps)
	if r.env.Steps == nil {
		r.env.Steps = map[string]StepState{}
	}
	r.env.Run.Attempt = st.RunAttempt + 1
	if r.inv.Attempt > 0 {
		r.env.Run.Attempt = r.inv.Attempt // a wake-up after a suspension is not a new attempt
	}
	r.res.Steps = slices.Clone(st.Records)
	if !st.Started.IsZero() {
		r.res.Started = st.Started
	}
	r.next, r.stepAttempts, r.waitUntil = st.Next, st.StepAttempts, st.WaitUntil
	r.tries, r.triesDropped = slices.Clone(st.StepTries), st.StepTriesDropped
	if st.Phase == PhaseCompensating || st.Phase == PhaseOnFailure {
		r.phase, r.undo = st.Phase, st.Undo
		r.fail = &failure{}
		if st.Failure != nil {
			r.fail.step, r.fail.msg, r.fail.cancelled = st.Failure.Step, st.Failure.Message, st.Failure.Cancelled
			r.fail.logged = st.Failure.Logged
		}
		r.res.Compensations = slices.Clone(st.Compensations)
	}
	if !st.WaitUntil.IsZero() { // woken from a wait, not resumed after a crash
		r.sagaDeadline, r.stepDeadline = st.SagaDeadline, st.StepDeadline
		if !st.CleanupDeadline.IsZero() {
			// Undoing is owed whatever happened meanwhile: the time the run was due but not
			// running (the process was down, the workers busy) is given back to the cleanup.
			r.cleanupDeadline = st.CleanupDeadline.Add(max(0, r.e.clock.Now().Sub(st.WaitUntil)))
		}
	}
}

// failure is why the forward pass stopped.
type failure struct {
	cancelled bool
	step      string
	msg       string // redacted: the run's error, for the record, the log and error.message
	sender    string // what the sender of a sync request is told (senderMessage)
	logged    string // redacted: msg for the info-level log, without a downstream's answer; "" = msg
}

func (r *run) execute(ctx context.Context) *Result {
	res := r.res
	caller := ctx
	if r.s.Timeout > 0 {
		if r.sagaDeadline.IsZero() {
			r.sagaDeadline = time.Now().Add(r.s.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, r.sagaDeadline, timedOut("saga", r.s.Timeout))
		defer cancel()
	}

	if r.fail != nil {
		// Resumed past the forward pass: finish the cleanup it was in.
		return r.cleanupAndFinish(ctx)
	}
	if res.Steps == nil {
		res.Steps = make([]StepRecord, 0, len(r.s.Steps))
	}
	var fail *failure
	for i := r.next; i < len(r.s.Steps) && fail == nil; i++ {
		st := r.s.Steps[i]
		if r.inv.Cancelled != nil && r.inv.Cancelled() {
			if i == r.next && r.stepAttempts > 0 {
				// Cancelled in the step's retry wait: the tries it made stay on record, as a
				// failed step's (nothing to undo), though the run stops for the cancel.
				res.Steps = append(res.Steps, r.abandonedStep(st))
			}
			// A retry wait it was woken from is over: its tries are not a compensation's.
			r.next, r.stepAttempts, r.waitUntil = i, 0, time.Time{}
			fail = &failure{cancelled: true, step: st.Name, msg: "cancelled before step " + st.Name,
				sender: "the run was cancelled"}
			break
		}
		done := 0
		if i == r.next && r.stepAttempts > 0 {
			done = r.stepAttempts
			if r.waitOn(ctx) { // woken early
				return r.suspended(r.waitUntil)
			}
		}
		r.next, r.stepAttempts = i, 0 // the step's retry waits are checkpointed at i
		rec, ans, err := r.step(ctx, i, st, done)
		if err != nil {
			// Declared here, sus (which errors.As makes escape) costs a heap object on the
			// error path alone instead of once per step.
			var sus *suspension
			if errors.As(err, &sus) {
				return r.suspended(sus.until)
			}
		}
		if err != nil && errors.Is(context.Cause(caller), ErrInterrupted) {
			// Given up, not failed: nothing is undone, and the run resumes from its last
			// checkpoint.
			res.Status = StatusInterrupted
			return res
		}
		res.Steps = append(res.Steps, rec)
		switch {
		case ans != nil:
			res.Answer = redactAnswer(r.rs, ans)
			res.Status = StatusSucceeded
			return r.finish()
		case err != nil && !st.ContinueOnError:
			r.next = i
			fail = &failure{step: st.Name, msg: rec.Error, sender: senderMessage(st.Name, st.Action, err)}
			var fe *failError
			if !errors.As(err, &fe) {
				fail.msg = st.Name + ": " + rec.Error
				if brief, ok := withoutAnswer(err); ok {
					fail.logged = st.Name + ": " + r.rs.redactString(brief)
				}
			}
		default:
			// Only a step that touched the world needs its result kept: a resume re-runs
			// pure steps (set, log, skipped ones) for free, and every checkpoint is an
			// fsync'd write the sender of a sync request waits for.
			if i+1 < len(r.s.Steps) && rec.Status != StatusSkipped && st.Action.hasEffects() {
				r.checkpoint(ctx, i+1, 0, time.Time{})
			}
		}
	}
	if fail == nil {
		res.Status = StatusSucceeded
		return r.finish()
	}
	res.SenderError = fail.sender
	r.fail, r.phase, r.undo = fail, PhaseCompensating, r.nextUndo(len(res.Steps)-1)
	if r.undo < 0 {
		r.phase = PhaseOnFailure
	}
	if r.cleanupHasEffects(r.undo) {
		// Leaving the forward pass is written down before anything is undone, so that a
		// restart continues the cleanup instead of trying the failed step again.
		r.checkpoint(ctx, r.next, 0, time.Time{})
	}
	return r.cleanupAndFinish(ctx)
}

// cleanupAndFinish runs the cleanup, or what is left of it, and ends this execution: the
// run is finished, or suspended in a compensation's retry wait.
func (r *run) cleanupAndFinish(ctx context.Context) *Result {
	if sus := r.cleanup(ctx); sus != nil {
		return r.suspended(sus.until)
	}
	return r.finish()
}

// waitOn serves what is left of a retry wait the run was woken from early (the action in
// progress made r.stepAttempts tries; the next is due at r.waitUntil): it suspends again
// (checkpointed, and true) or sleeps the rest in place.
func (r *run) waitOn(ctx context.Context) bool {
	wait := r.waitUntil.Sub(r.e.clock.Now())
	if wait <= 0 {
		return false
	}
	if r.suspends(r.waitUntil) {
		r.checkpoint(ctx, r.next, r.stepAttempts, r.waitUntil)
		return true
	}
	_ = r.e.clock.Sleep(ctx, wait) // a cancelled wait fails the try that follows
	return false
}

// abandonedStep is the record of step st, whose r.stepAttempts tries (r.tries) all failed
// and whose retry wait the run's cancel ended.
func (r *run) abandonedStep(st *Step) StepRecord {
	tries := "tries"
	if r.stepAttempts == 1 {
		tries = "try"
	}
	rec := StepRecord{Name: st.Name, Action: st.Action.Kind, Status: StatusFailed, Attempts: r.stepAttempts,
		Started: r.e.clock.Now(), Error: fmt.Sprintf("cancelled in its retry wait after %d %s", r.stepAttempts, tries)}
	if len(r.tries) > 0 {
		rec.Started = r.tries[0].Started
		for _, t := range r.tries {
			rec.Duration += t.Duration
		}
		if last := r.tries[len(r.tries)-1]; last.Error != "" {
			rec.Error += "; the last: " + last.Error
		}
		if len(r.tries) > 1 {
			rec.Tries, rec.TriesDropped = slices.Clone(r.tries), r.triesDropped
		}
	}
	return rec
}

// suspends says whether a wait until `until` suspends this run rather than sleeping in it:
// the invocation allows it, and a Checkpointer keeps the wait for whoever wakes the run.
func (r *run) suspends(until time.Time) bool {
	return r.e.opts.Checkpointer != nil && r.inv.Suspends(until)
}

// suspended ends this execution of the run without ending the run: its checkpoint holds
// the wait, and the caller resumes it at until.
func (r *run) suspended(until time.Time) *Result {
	res := r.res
	res.Status, res.WakeAt = StatusWaiting, until
	res.Duration = r.e.clock.Now().Sub(res.Started)
	r.log.Debug("saga run suspended", zap.Time("until", until))
	return res
}

func redactAnswer(rs *runState, a *Answer) *Answer {
	out, _ := rs.redact(a).(*Answer)
	if out != nil && out.Body != nil {
		if b, err := jsonenc.AppendValue(make([]byte, 0, 256), out.Body); err == nil {
			out.BodyJSON = b
		}
	}
	return out
}

func (r *run) finish() *Result {
	res := r.res
	res.Duration = r.e.clock.Now().Sub(res.Started)
	if v, ok := r.rs.redact(r.env.Vars).(map[string]any); ok {
		res.Vars = v
	}
	if res.Status == StatusSucceeded {
		r.log.Debug("saga run finished", zap.String("status", res.Status), zap.Duration("duration", res.Duration))
	} else {
		logged := res.Error
		if r.fail != nil && r.fail.logged != "" && res.Error == r.fail.msg {
			logged = r.fail.logged
			r.log.Debug("saga run failed: the error as recorded", zap.String("error", res.Error))
		}
		r.log.Info("saga run failed", zap.String("status", res.Status), zap.String("step", res.FailedStep),
			zap.String("error", logged), zap.Duration("duration", res.Duration))
	}
	return res
}

// cleanup compensates the steps that succeeded, newest first, then runs on_failure. It
// continues from r.phase and r.undo, so a resumed run does only what was left. It runs on
// a context detached from the caller's: a saga that timed out still needs undoing. A
// compensation's retry wait suspends the run as a forward step's does (the checkpoint
// holds the phase, the compensation and its tries); it returns that suspension.
func (r *run) cleanup(ctx context.Context) *suspension {
	res := r.res
	res.Status, res.Error, res.FailedStep = StatusFailed, r.fail.msg, r.fail.step
	r.env.Error = &ErrorEnv{Step: r.fail.step, Message: r.fail.msg}
	if r.cleanupDeadline.IsZero() {
		r.cleanupDeadline = time.Now().Add(r.e.opts.CleanupTimeout)
	}
	cctx, cancel := context.WithDeadlineCause(context.WithoutCancel(ctx), r.cleanupDeadline,
		fmt.Errorf("compensation timed out after %s", r.e.opts.CleanupTimeout))
	defer cancel()

	if r.phase == PhaseCompensating {
		for j := r.nextUndo(r.undo); j >= 0; j = r.nextUndo(j - 1) {
			rec := &res.Steps[j]
			st := r.s.step(rec.Name)
			done := 0
			if j == r.undo && r.stepAttempts > 0 { // woken from this compensation's retry wait
				done = r.stepAttempts
				if r.waitOn(cctx) {
					return &suspension{until: r.waitUntil}
				}
			}
			r.undo, r.stepAttempts = j, 0
			crec, _, err := r.action(cctx, st.Name, st.Compensate, st.Retry, st.Timeout, partCompensation, done)
			var sus *suspension
			if errors.As(err, &sus) {
				return sus
			}
			res.Compensations = append(res.Compensations, crec)
			if crec.Status == StatusSucceeded {
				rec.Status = StatusCompensated
				s := r.env.Steps[st.Name]
				s.Status = StatusCompensated
				r.env.Steps[st.Name] = s
			}
			if r.undo = r.nextUndo(j - 1); r.undo < 0 {
				r.phase = PhaseOnFailure
			}
			// Done is written down so a restart does not undo this step again; not needed
			// when the compensation touched nothing, nor when nothing is left but the
			// outcome, which the caller records.
			if st.Compensate.hasEffects() && (r.phase == PhaseCompensating || r.s.OnFailure != nil) {
				r.checkpoint(cctx, r.next, 0, time.Time{})
			}
		}
		r.phase = PhaseOnFailure
	}
	res.Status = cleanupStatus(res.Compensations)
	if r.fail.cancelled {
		res.FailedStep = ""
		if res.Status != StatusCompensationFailed {
			res.Status = StatusCancelled
		}
	}
	if r.s.OnFailure != nil {
		// One try: on_failure has no retry policy, so no wait to suspend in.
		rec, ans, _ := r.action(cctx, "on_failure", r.s.OnFailure, Retry{Attempts: 1}, 0, partOnFailure, 0)
		res.OnFailure = &rec
		if ans != nil {
			res.Answer = redactAnswer(r.rs, ans)
		}
	}
	return nil
}

// cleanupStatus is a failed run's final status: compensated only when every compensation
// succeeded, so the runs that left something half-undone can be found.
func cleanupStatus(comps []StepRecord) string {
	if len(comps) == 0 {
		return StatusFailed
	}
	for _, c := range comps {
		if c.Status != StatusSucceeded {
			return StatusCompensationFailed
		}
	}
	return StatusCompensated
}

// nextUndo is the index in res.Steps, at from or below, of the newest step whose
// compensation is due (it succeeded and has one), or -1.
func (r *run) nextUndo(from int) int {
	for j := min(from, len(r.res.Steps)-1); j >= 0; j-- {
		rec := r.res.Steps[j]
		if st := r.s.step(rec.Name); rec.Status == StatusSucceeded && st != nil && st.Compensate != nil {
			return j
		}
	}
	return -1
}

// cleanupHasEffects says whether a compensation at from or below, or on_failure, would
// touch anything outside the run. A cleanup without effects can be repeated from the
// forward pass's last checkpoint for free, so entering it needs no write of its own.
func (r *run) cleanupHasEffects(from int) bool {
	if r.s.OnFailure != nil && r.s.OnFailure.hasEffects() {
		return true
	}
	for j := r.nextUndo(from); j >= 0; j = r.nextUndo(j - 1) {
		if r.s.step(r.res.Steps[j].Name).Compensate.hasEffects() {
			return true
		}
	}
	return false
}

// step runs one step: its condition, then its action with retries.
func (r *run) step(ctx context.Context, i int, st *Step, done int) (StepRecord, *Answer, error) {
	if st.when != nil {
		prev := r.ev.bind(ctx)
		ok, err := r.ev.evalBool(st.when)
		r.ev.bind(prev)
		if err != nil {
			rec := StepRecord{Name: st.Name, Action: st.Action.Kind, Status: StatusFailed, Started: r.e.clock.Now()}
			rec.Error = r.rs.redactString("when: " + err.Error())
			r.env.Steps[st.Name] = StepState{Status: StatusFailed, Error: rec.Error}
			return rec, nil, &inputError{err}
		}
		if !ok {
			r.env.Steps[st.Name] = StepState{Status: StatusSkipped}
			return StepRecord{Name: st.Name, Action: st.Action.Kind, Status: StatusSkipped, Started: r.e.clock.Now()}, nil, nil
		}
	}
	return r.action(ctx, st.Name, st.Action, st.Retry, st.Timeout, partStep, done)
}

// part is what an action is to its run.
type part int

const (
	// partStep is the forward step Steps[r.next]; it sets steps.<name>.
	partStep part = iota
	// partCompensation is the compensation of Records[r.undo].
	partCompensation
	// partOnFailure is on_failure: never resumed mid-action.
	partOnFailure
)

// action runs a with retries and records it under name; a forward step sets steps.<name>
// for the expressions that follow. done is the tries already made (a run woken from a
// retry wait). The retry waits of a step or a compensation are checkpointed, and suspend
// the run when it may (the error is then a *suspension).
func (r *run) actionUntraced(ctx context.Context, name string, a *Action, retry Retry, timeout time.Duration, p part, done int) (StepRecord, *Answer, error) {
	rec := StepRecord{Name: name, Action: a.Kind, Started: r.e.clock.Now()}
	if r.e.opts.Transport != nil {
		label := name
		switch p {
		case partCompensation:
			label += ".compensate"
		case partOnFailure:
			label = "on_failure"
		}
		ctx = context.WithValue(ctx, callingStepKey{}, label)
	}
	parentDeadline, parentHasDeadline := ctx.Deadline()
	resumable := p != partOnFailure
	if timeout > 0 {
		dl := time.Now().Add(timeout)
		if resumable {
			if done > 0 && !r.stepDeadline.IsZero() {
				dl = r.stepDeadline // woken from a wait: the tries share one timeout
			}
			r.stepDeadline = dl
			defer func() { r.stepDeadline = time.Time{} }()
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, dl, timedOut("step", timeout))
		defer cancel()
	}
	if retry.Attempts < 1 {
		retry.Attempts = 1
	}
	if done == 0 || len(r.tries) > done {
		// A fresh action, or a checkpoint that does not match: start the record afresh.
		r.tries, r.triesDropped = nil, 0
	}
	defer func() { r.tries, r.triesDropped = nil, 0 }()
	var (
		input, output any
		ans           *Answer
		err           error
		retryAfter    []string // how each Retry-After header shaped a wait, for the record
	)
	for n := done + 1; ; n++ {
		rec.Attempts = n
		if ctx.Err() != nil {
			err = context.Cause(ctx)
			break
		}
		tryStart := rec.Started // the first try starts with the step: one clock read less per step
		if n > done+1 {
			tryStart = r.e.clock.Now()
		}
		input, output, ans, err = r.exec(ctx, a)
		r.addTry(a.Kind, tryStart, output, err)
		if err != nil && ctx.Err() != nil {
			// The try failed because time ran out; say which clock ran out rather than only
			// "context deadline exceeded".
			if cause := context.Cause(ctx); !errors.Is(err, cause) {
				err = fmt.Errorf("%w: %w", cause, err)
			}
			break
		}
		if err == nil || n >= retry.Attempts || isPermanent(err) {
			break
		}
		wait, why := r.e.backoff(retry, n), "backoff"
		var ra *retryAfterError
		if errors.As(err, &ra) {
			wait, why = retryAfterWait(ra, retry, wait, n+1)
		}
		if dl, ok := ctx.Deadline(); ok {
			// The next try could never start: fail now, so compensation starts now too,
			// rather than sleep until the deadline only to fail then.
			if left := time.Until(dl); wait > left {
				what := "the run's deadline"
				if p != partStep {
					what = "the cleanup deadline"
				}
				if timeout > 0 && (!parentHasDeadline || dl.Before(parentDeadline)) {
					what = fmt.Sprintf("the step's timeout (%s)", timeout)
				}
				err = fmt.Errorf("%w; not retrying: the next try would be due in %s (%s), after %s, %s from now",
					err, wait, why, what, left.Round(time.Millisecond))
				break
			}
		}
		if ra != nil {
			retryAfter = append(retryAfter, why)
		}
		if resumable {
			wake := r.e.clock.Now().Add(wait)
			r.checkpoint(ctx, r.next, n, wake)
			if r.suspends(wake) {
				// The wait is the store's now: the worker is free for other runs.
				return rec, nil, &suspension{until: wake}
			}
		}
		r.log.Debug("step failed, retrying", zap.String("step", name), zap.Int("attempt", n),
			zap.Duration("wait", wait), zap.String("error", r.rs.redactString(err.Error())))
		if serr := r.e.clock.Sleep(ctx, wait); serr != nil {
			err = fmt.Errorf("%w (waiting to retry after: %w)", serr, err)
			break
		}
	}
	rec.Duration = r.e.clock.Now().Sub(rec.Started)
	if rec.Attempts > 1 {
		rec.Tries, rec.TriesDropped = slices.Clone(r.tries), r.triesDropped
	}
	rec.Input = r.recordValue(input)
	rec.Output = r.recordValue(output)
	if m, ok := rec.Output.(map[string]any); ok && len(retryAfter) > 0 {
		// History only: steps.<name>.output stays the downstream's answer. A clone, since
		// the recorded map may be the one expressions see.
		m = maps.Clone(m)
		m["retry_after"] = slices.Clone(retryAfter)
		rec.Output = m
	}
	state := StepState{Output: output, Attempts: rec.Attempts}
	if err != nil {
		rec.Status = StatusFailed
		msg := err.Error()
		if len(retryAfter) > 0 {
			msg += " (earlier waits: " + strings.Join(retryAfter, "; ") + ")"
		}
		rec.Error = r.rs.redactString(msg)
		state.Status, state.Error = StatusFailed, rec.Error
	} else {
		rec.Status = StatusSucceeded
		state.Status = StatusSucceeded
	}
	if p == partStep {
		r.env.Steps[name] = state
	}
	return rec, ans, err
}

type callingStepKey struct{}

// CallingStep is, for a request an http step sends through EngineOptions.Transport, the
// step's name; "<step>.compensate" for its compensation and "on_failure" for on_failure.
// "" for any other context.
func CallingStep(ctx context.Context) string {
	s, _ := ctx.Value(callingStepKey{}).(string)
	return s
}

// addTry records one try of the action in progress.
func (r *run) addTry(kind string, start time.Time, output any, err error) {
	t := Try{Status: StatusSucceeded, Started: start, Duration: r.e.clock.Now().Sub(start)}
	if m, ok := output.(map[string]any); ok && kind == KindHTTP {
		t.HTTPStatus, _ = m["status"].(int)
	}
	if err != nil {
		t.Status, t.Error = StatusFailed, r.rs.redactString(err.Error())
		if len(t.Error) > maxTryError {
			t.Error = truncated(t.Error, maxTryError)
		}
	}
	r.tries, r.triesDropped = addTry(r.tries, r.triesDropped, t)
}

// maxTryError bounds one try's recorded error: MaxTries of them stay small.
const maxTryError = 1 << 10

// exec renders and performs one try of an action. input is what gets recorded.
func (r *run) exec(ctx context.Context, a *Action) (input, output any, ans *Answer, err error) {
	prev := r.ev.bind(ctx)
	defer r.ev.bind(prev)
	switch a.Kind {
	case KindHTTP:
		in, err := a.http.render(r.ev)
		if err != nil {
			return nil, nil, nil, permanent(&inputError{err})
		}
		out, err := r.e.execHTTP(ctx, in, a.http.expect, r.inv.Egress)
		return in.record(), out, nil, err
	case KindSet:
		m, err := a.set.render(r.ev)
		if err != nil {
			return nil, nil, nil, permanent(&inputError{err})
		}
		maps.Copy(r.env.Vars, m)
		return m, nil, nil, nil
	case KindKV:
		in, err := a.kv.render(r.ev)
		if err != nil {
			return nil, nil, nil, permanent(&inputError{err})
		}
		out, err := r.e.execKV(ctx, r.inv.Partner.ID, in)
		return in.record(), out, nil, err
	case KindRespond:
		ans, err := a.respond.render(r.ev)
		if err != nil {
			return nil, nil, nil, permanent(&inputError{err})
		}
		return answerRecord(ans), nil, ans, nil
	case KindFail:
		msg, err := a.fail.render(r.ev)
		if err != nil {
			return nil, nil, nil, permanent(&inputError{err})
		}
		return map[string]any{"message": msg}, nil, nil, permanent(&failError{msg: r.rs.redactString(msg)})
	case KindLog:
		in, err := a.log.render(r.ev)
		if err != nil {
			return nil, nil, nil, permanent(&inputError{err})
		}
		safe := &logInput{level: in.level, message: r.rs.redactString(in.message)}
		if in.fields != nil {
			safe.fields, _ = r.rs.redact(in.fields).(map[string]any)
		}
		execLog(r.log, safe)
		return in.record(), nil, nil, nil
	}
	return nil, nil, nil, permanent(fmt.Errorf("unknown action %q", a.Kind))
}

func answerRecord(a *Answer) any {
	m := map[string]any{"status": a.Status}
	if len(a.Headers) > 0 {
		m["headers"] = a.Headers
	}
	if a.Body != nil {
		m["body"] = a.Body
	}
	return m
}

// recordValue is v as history keeps it: secrets replaced, cut to MaxOutputBytes of JSON.
func (r *run) recordValue(v any) any {
	if v == nil {
		return nil
	}
	v = r.rs.redact(v)
	max := r.e.opts.MaxOutputBytes
	if s, ok := v.(string); ok {
		if len(s) <= max {
			return s
		}
		return truncated(s, max)
	}
	if bound, ok := jsonBound(v, max); ok && bound <= max {
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<unrecordable %T: %v>", v, err)
	}
	if len(b) <= max {
		return v
	}
	return truncated(string(b), max)
}

// jsonBound is an upper bound on the length of v's JSON, found without encoding it: most
// recorded values are small, and encoding each one only to measure it costs more than the
// step. ok is false for values it cannot bound, or once the bound passes limit.
func jsonBound(v any, limit int) (n int, ok bool) {
	const scalar = 32 // a number, bool or null, with its comma
	switch x := v.(type) {
	case nil, bool, int, int64, float64:
		return scalar, true
	case string:
		return 6*len(x) + 3, true // every byte may need a \u00XX escape
	case map[string]any:
		n = 2
		for k, e := range x {
			m, ok := jsonBound(e, limit)
			if !ok {
				return 0, false
			}
			if n += 6*len(k) + 4 + m; n > limit {
				return n, false
			}
		}
		return n, true
	case map[string]string:
		n = 2
		for k, e := range x {
			if n += 6*len(k) + 6*len(e) + 6; n > limit {
				return n, false
			}
		}
		return n, true
	case []any:
		n = 2
		for _, e := range x {
			m, ok := jsonBound(e, limit)
			if !ok {
				return 0, false
			}
			if n += m + 1; n > limit {
				return n, false
			}
		}
		return n, true
	}
	return 0, false
}

func truncated(s string, max int) string {
	cut := s[:max]
	for len(cut) > 0 && !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	return cut + fmt.Sprintf("…(truncated, %d bytes)", len(s))
}

// checkpoint hands the run's state to the Checkpointer.
func (r *run) checkpoint(ctx context.Context, next, stepAttempts int, waitUntil time.Time) {
	cp := r.e.opts.Checkpointer
	if cp == nil {
		return
	}
	st := &State{
		RunID: r.inv.RunID, SagaVersion: r.s.Version, RunAttempt: r.env.Run.Attempt, Started: r.res.Started,
		Phase: PhaseForward, Next: next, StepAttempts: stepAttempts, WaitUntil: waitUntil,
		StepTries: slices.Clone(r.tries), StepTriesDropped: r.triesDropped,
		SagaDeadline: r.sagaDeadline, StepDeadline: r.stepDeadline, CleanupDeadline: r.cleanupDeadline,
		Vars:    map[string]any{},
		Steps:   make(map[string]StepState, len(r.env.Steps)),
		Records: slices.Clone(r.res.Steps),
	}
	if stepAttempts > 0 {
		st.Step, st.StepAction = r.inProgress(next)
	}
	if r.fail != nil {
		st.Phase, st.Undo, st.Compensations = r.phase, r.undo, slices.Clone(r.res.Compensations)
		st.Failure = &Failure{Step: r.fail.step, Message: r.fail.msg, Cancelled: r.fail.cancelled, Logged: r.fail.logged}
	}
	if v, ok := r.rs.redact(r.env.Vars).(map[string]any); ok {
		st.Vars = maps.Clone(v)
	}
	for k, s := range r.env.Steps {
		st.Steps[k], _ = r.rs.redact(s).(StepState)
	}
	if err := cp.Checkpoint(ctx, st); err != nil {
		r.log.Warn("saga checkpoint failed; the run goes on but cannot resume from here",
			zap.Int("next_step", next), zap.Error(err))
	}
}

// inProgress names the action whose tries a checkpoint records: Steps[next] in the forward
// pass, the compensation of Records[undo] while compensating (on_failure makes one try and
// is not checkpointed).
func (r *run) inProgress(next int) (step, action string) {
	switch {
	case r.fail == nil && next < len(r.s.Steps):
		st := r.s.Steps[next]
		return st.Name, st.Action.Kind
	case r.phase == PhaseCompensating && r.undo < len(r.res.Steps):
		name := r.res.Steps[r.undo].Name
		if st := r.s.step(name); st != nil && st.Compensate != nil {
			return name, st.Compensate.Kind
		}
	}
	return "", ""
}

// step finds a step by name.
func (s *Saga) step(name string) *Step {
	for _, st := range s.Steps {
		if st.Name == name {
			return st
		}
	}
	return nil
}

// Render evaluates a key template (debounce.key, serialize_by) for an invocation, before any
// step has run.
func (t *Template) Render(inv *Invocation) (string, error) {
	if t == nil || t.t == nil {
		return "", errors.New("no template")
	}
	rs := newRunState(inv.Secrets)
	v, err := t.t.render(newEvaluator(newEnv(inv, rs), defaultExprLimits()))
	if err != nil {
		return "", fmt.Errorf("%s: %w", strings.TrimSpace(t.Source), err)
	}
	return stringify(v), nil
}

// Pure says whether a run of s can touch nothing outside itself and never waits: no step,
// compensation or on_failure action has effects (hasEffects), and no step retries. Such a
// run can be executed before it is recorded and recorded once, in its final state: until
// the record is written nothing has happened that a crash would need to resume or undo.
func (s *Saga) Pure() bool {
	if s.OnFailure != nil && s.OnFailure.hasEffects() {
		return false
	}
	for _, st := range s.Steps {
		if st.Action.hasEffects() || (st.Compensate != nil && st.Compensate.hasEffects()) || st.Retry.Attempts > 1 {
			return false
		}
	}
	return true
}

// hasEffects says whether running the action again after a crash would repeat something
// outside the run: a request to another system, or a write to kv state.
func (a *Action) hasEffects() bool {
	return a.Kind == KindHTTP || a.Kind == KindKV
}
