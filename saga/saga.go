// Package saga loads saga files and runs them: ordered steps with expr conditions, templated
// actions, retries with backoff, and compensation of completed steps when a later one fails.
//
// A saga is compiled once when the configuration loads (Parse): every `when` and every
// `${ expr }` template becomes a *vm.Program, so a run only evaluates. The Engine runs a
// compiled saga for one Invocation; Plan shows what a run would do without calling anything.
//
// Behaviour worth knowing when writing a saga:
//
//   - A string that is exactly one `${ expr }` keeps the value's type; inside other text a
//     value prints as text (nil as nothing, maps and lists as JSON). `$${` is a literal `${`.
//   - `site` is nil for partner-scoped endpoints: write `site?.id`.
//   - A failed try is retried while attempts remain, except when retrying cannot help: a
//     template that does not render, an http 4xx other than 408/425/429, an egress refusal,
//     an answer over the size limit, a fail action.
//   - A step's timeout bounds the whole step, retries and waits included; an http timeout
//     bounds one request (30s when neither is set). A retry wait that would end after the
//     step's (or the saga's) deadline is not slept: the step fails at once, saying so.
//   - A 429 or 503 answer with Retry-After (seconds or an HTTP-date) waits the larger of the
//     backoff and Retry-After, the latter capped at max_backoff (1h when there is none) and
//     not jittered. The recorded output (history only, not steps.<name>.output) lists the
//     waits under retry_after; a failing step's error names them too.
//   - An http answer longer than EngineOptions.MaxResponseBytes fails the step instead of
//     being cut: half a JSON document is worse than none.
//   - Compensation and on_failure run on a context of their own (CleanupTimeout), so a saga
//     that timed out is still undone. A compensation retries with its step's retry policy,
//     and its waits suspend a run that may suspend, as a forward step's do; CleanupTimeout
//     counts across those suspensions. on_failure makes one try.
//   - Every text secret() returned, and its base64, hex and URL-escaped forms, is replaced
//     by "<secret>" in recorded inputs, outputs, errors, log lines, the answer, and
//     checkpoints. Credential headers (Authorization, Proxy-Authorization, Cookie, and any
//     whose template calls secret()) are recorded as "<redacted>" whatever their value,
//     and their rendered values are scrubbed from outputs and errors too.
//   - An http url's origin (scheme, user info, host, port) is written out or comes from
//     one leading `${ }` that reads only settings; any other `${ }` in a url is escaped as
//     one path segment or one query key or value (url.go). Checked at load.
//   - A failed run tells a sync sender only the failing step and a generic reason
//     (Result.SenderError), or a fail action's own message; Result.Error keeps the details.
package saga

import (
	"slices"
	"time"

	"github.com/pushbackd/pushbackd/yamlconf"
)

// Run and step statuses as recorded.
const (
	StatusSucceeded   = "succeeded"
	StatusFailed      = "failed"
	StatusSkipped     = "skipped"
	StatusCompensated = "compensated"
	// StatusCompensationFailed ends a failed run when at least one compensation did not
	// succeed after its retries: something it did may still be in place.
	StatusCompensationFailed = "compensation_failed"
	// StatusCancelled ends a run an operator cancelled (Invocation.Cancelled) once the
	// steps it completed were compensated. A compensation that failed ends it
	// StatusCompensationFailed instead: something it did may still be in place.
	StatusCancelled = "cancelled"
)

// Action kinds ("saga methods").
const (
	KindHTTP    = "http"
	KindSet     = "set"
	KindKV      = "kv"
	KindRespond = "respond"
	KindFail    = "fail"
	KindLog     = "log"
)

// actionKinds lists the action keys in the order error messages name them.
var actionKinds = []string{KindHTTP, KindSet, KindKV, KindRespond, KindFail, KindLog}

// Saga is one compiled saga file. It is immutable after Parse and safe to share between runs.
type Saga struct {
	Name        string
	Description string
	File        string
	// Version is the first 12 hex digits of the SHA-256 of the file's bytes; runs record it so
	// history shows which edit of a saga ran.
	Version string
	// Source is the YAML as loaded: the admin API shows and versions exactly this.
	Source  []byte
	Timeout time.Duration // 0: bounded only by the caller's context
	Steps   []*Step
	// OnFailure runs after compensation when the run fails; a respond action here answers
	// the sender of a sync endpoint.
	OnFailure *Action
	// Debounce and SerializeBy are parsed, compiled and validated here, but the engine does
	// not act on them: both need state shared between runs, which the durable store owns.
	// The store renders their keys with Template.Render before it schedules a run.
	Debounce    *Debounce
	SerializeBy *Template
	// SerializeByPos is where serialize_by is in File, for errors about its use.
	SerializeByPos yamlconf.Pos
}

// Debounce makes the last event for one key within Wait win.
type Debounce struct {
	Key  *Template
	Wait time.Duration
	// Scope is where events must arrive to share a key: ScopeEndpoint (the default) or,
	// when the saga says so, ScopeSite or ScopePartner.
	Scope Scope
	Pos   yamlconf.Pos // where debounce is in the saga's file, for errors about its use
}

// Scope is how far a debounce key reaches. Keys are scoped so that a sender holding one
// endpoint's credentials cannot supersede runs that another endpoint's sender started.
type Scope string

const (
	// ScopeEndpoint: only events posted to the same URL share a key.
	ScopeEndpoint Scope = "endpoint"
	// ScopeSite: events posted to any endpoint of the same site share a key (the partner's
	// own endpoints count as one site).
	ScopeSite Scope = "site"
	// ScopePartner: events posted to any endpoint of the partner or its sites share a key.
	ScopePartner Scope = "partner"
)

// Step is one entry of a saga's steps list.
type Step struct {
	Name            string
	Pos             yamlconf.Pos
	When            string // the source of the condition, "" when absent
	Action          *Action
	Timeout         time.Duration // bounds the whole step, retries and their waits included
	Retry           Retry
	ContinueOnError bool
	Compensate      *Action

	when *program
}

// Retry is a step's retry policy.
type Retry struct {
	Attempts   int           // every try, the first included; at least 1
	Backoff    time.Duration // wait before the second try; doubles each time
	MaxBackoff time.Duration // cap on one wait
}

// Action is one saga method, compiled. Exactly one of the kind-specific parts is set.
type Action struct {
	Kind string
	Pos  yamlconf.Pos

	http    *httpAction
	set     *setAction
	kv      *kvAction
	respond *respondAction
	fail    *failAction
	log     *logAction
}

// Result is the outcome of one run. Its JSON is what history keeps beside the run record,
// so the fields the record already has (id, saga, version, status) are left out of it, and
// empty ones are omitted: it is written for every run.
type Result struct {
	RunID       string  `json:"-"`
	Saga        string  `json:"-"`
	SagaVersion string  `json:"-"`
	Status      string  `json:"-"`                // succeeded | failed | compensated | compensation_failed
	Answer      *Answer `json:"answer,omitempty"` // set by a respond action (in the steps or in on_failure); secrets redacted
	Error       string  `json:"error,omitempty"`  // the failing step's message, free of secrets
	FailedStep  string  `json:"failed_step,omitempty"`
	// SenderError is what the sender of a sync request is told when the run failed: the
	// failing step and a generic reason ("step fetch_loan failed: timed out"), or a fail
	// action's message as written. Not stored: Error has the details.
	SenderError string        `json:"-"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration"`

	Steps         []StepRecord   `json:"steps,omitempty"`         // in order; steps not reached are absent
	Compensations []StepRecord   `json:"compensations,omitempty"` // in the order they ran (reverse step order)
	OnFailure     *StepRecord    `json:"on_failure,omitempty"`
	Vars          map[string]any `json:"vars,omitempty"` // the final vars, redacted

	// WakeAt is when a run that ended StatusWaiting is due again.
	WakeAt time.Time `json:"-"`
}

// StepRecord is what history keeps about one step, one compensation or on_failure. Input and
// Output have every revealed secret replaced by "<secret>" and are cut to
// EngineOptions.MaxOutputBytes.
type StepRecord struct {
	Name     string        `json:"name"`
	Action   string        `json:"action"`
	Status   string        `json:"status"` // succeeded | failed | skipped | compensated
	Attempts int           `json:"attempts"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	Input    any           `json:"input,omitempty"`
	Output   any           `json:"output,omitempty"`
	Error    string        `json:"error,omitempty"`
	// Tries is each try of a step that made more than one (a single try is the record
	// itself), oldest first; a run woken from a retry wait or resumed after a crash keeps
	// the tries made before. At most MaxTries are kept — the first and the latest — and
	// TriesDropped counts those left out between them.
	Tries        []Try `json:"tries,omitempty"`
	TriesDropped int   `json:"tries_dropped,omitempty"`
}

// MaxTries is how many tries one StepRecord keeps: a step retried for a day must not
// grow its run record without bound. The first try is kept (what went wrong to begin
// with) and the latest MaxTries-1.
const MaxTries = 10

// Try is one try of a step: its outcome, when it started, how long it took (the retry
// wait after it not included), its error (redacted) and, for http steps that got an
// answer, the answer's status.
type Try struct {
	Status     string        `json:"status"` // succeeded | failed
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"duration"`
	Error      string        `json:"error,omitempty"`
	HTTPStatus int           `json:"http_status,omitempty"`
}

// addTry appends t to tries, dropping the second-oldest when MaxTries are kept.
func addTry(tries []Try, dropped int, t Try) ([]Try, int) {
	if len(tries) >= MaxTries {
		tries = slices.Delete(tries, 1, 2)
		dropped++
	}
	return append(tries, t), dropped
}
