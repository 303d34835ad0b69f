package saga

import (
	"net/http"
	"net/url"
	"time"

	"github.com/pushbackd/pushbackd/security"
)

// Ref names a partner or site for expressions: `partner.id`, `site.name`.
type Ref struct {
	ID   string `expr:"id" json:"id"`
	Name string `expr:"name" json:"name"`
}

// Request is the verified pushback as the gateway received it.
type Request struct {
	Method      string
	Path        string
	Headers     http.Header // as received; expressions see lower-case keys
	Query       url.Values
	RemoteIP    string
	ContentType string
	Raw         []byte // exact bytes received
	Body        any    // parsed per content type: JSON value, form map, XML map, or the raw text
	ReceivedAt  time.Time
}

// Invocation is everything one run needs, resolved from the configuration snapshot the request
// arrived under, so a reload mid-run cannot change what the run sees.
type Invocation struct {
	RunID    string
	Saga     *Saga
	Partner  Ref
	Site     *Ref // nil for partner-scoped endpoints
	Endpoint string
	Settings map[string]any             // site settings over partner settings
	Secrets  map[string]security.Secret // for secret(name)
	// Egress narrows the engine's egress policy for this run (the server's and the
	// partner's egress.allow, taken from the config the request arrived under, so a reload
	// applies to new runs): an http step must pass every one.
	Egress  []EgressPolicy
	Request Request

	// Suspend lets the run be suspended through a wait instead of sleeping in it (see
	// Suspends and StatusWaiting). Only a caller whose store wakes the run at its wake
	// time may set it; the engine also needs a Checkpointer to suspend.
	Suspend bool
	// SleepUntil: with Suspend, a wait that ends before it is slept in place all the same:
	// a sync sender waiting for the answer gets it sooner than a wake-up would bring it.
	SleepUntil time.Time
	// Attempt is run.attempt for expressions when the caller counts attempts itself (a
	// store that tells a resume after a crash from a wake-up after a suspension); 0 lets
	// the engine count: 1, and one more than the checkpoint's on a resume.
	Attempt int
	// Cancelled, when set, is asked before each forward step: true stops the run there,
	// compensates the steps it completed and ends it StatusCancelled (an operator
	// cancelled it). A step in progress is not interrupted.
	Cancelled func() bool
}

// Answer is what the sender is told when a saga responds.
type Answer struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body,omitempty"`
	// BodyJSON is Body's JSON, encoded once when the engine made the answer, or nil. A sync
	// answer is written three times — to the sender, into the run's answer and into its
	// result — and encoding it each time was a tenth of a pure saga's run. Never changed
	// once set: readers share it.
	BodyJSON []byte `json:"-"`
}
