// Package gateway is pushbackd's HTTP face for senders: it routes a pushback to its endpoint,
// reads the body once under the size limit, proves who sent it, parses it, hands it to the
// saga runner and answers in the JSON shape of DESIGN §5.
package gateway

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/internal/jsonenc"
	"github.com/pushbackd/pushbackd/internal/warm"
	"github.com/pushbackd/pushbackd/payload"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/tracing"
)

// ConfigSource hands out the configuration snapshot a request runs under.
type ConfigSource interface {
	Current() *config.Config
}

// Runs records and runs verified requests; *dispatch.Dispatcher is the real one.
type Runs interface {
	// Accept durably records an async run; it returns after the commit, or the id of the
	// run that already holds the idempotency or message key.
	Accept(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (duplicateOf string, err error)
	// RunSync records a run and runs it to the end, or until it must wait past
	// inv.SleepUntil: then it returns saga.StatusWaiting (or saga.StatusInterrupted at
	// shutdown) and the run goes on without the sender.
	RunSync(ctx context.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions) (*saga.Result, string, error)
}

// Observer hears what the gateway answers, for metrics.
type Observer interface {
	// Request counts an answer; reason is "" or one of the Reason constants.
	Request(partner, endpoint string, code int, reason string)
	AuthFailure(partner, site, endpoint string, method security.Method, reason security.Reason)
}

type noObserver struct{}

func (noObserver) Request(string, string, int, string)                                  {}
func (noObserver) AuthFailure(string, string, string, security.Method, security.Reason) {}

// Options are the gateway's collaborators.
type Options struct {
	Config   ConfigSource
	Runs     Runs
	Observer Observer // nil: nobody listens
	// ClientLimiter is shared with the admin API, so guesses there and here count together.
	ClientLimiter *security.ClientLimiter
	Logger        *zap.Logger
	Now           func() time.Time // defaults to time.Now
	// Tracing makes a server span per authenticated pushback; nil: no tracing, at no cost.
	Tracing trace.TracerProvider
}

// Gateway serves /pushback/...
type Gateway struct {
	opts    Options
	echo    *echo.Echo
	running sync.WaitGroup // sync sagas that outlived their sender's wait
	// sagaRunners run sync sagas on goroutines whose stacks a previous run already grew.
	sagaRunners *warm.Pool
	inFlight    sync.Map // "partner/endpoint" -> *atomic.Int64, for max_in_flight
	// Failed-authentication budgets. They live here, not in the config, so a reload does
	// not hand an attacker fresh tries.
	clients   *security.ClientLimiter
	endpoints *security.FailureLimiter
	// rejections are the latest schema rejections, for the admin API.
	rejections *Rejections
	tracer     trace.Tracer // nil: tracing off
	// unauthorized is the 401's body, the same for every refused guess. Written, never
	// changed: writeEncoded copies it into the response.
	unauthorized []byte
}

// Reasons a request is answered as it is, besides its status: the reason label of
// pushbackd_requests_total, "" for every other answer.
const (
	ReasonSchema      = "schema"      // 400: the body does not match the endpoint's schema
	ReasonUnparseable = "unparseable" // 400: the body cannot be parsed as its content type says
)

// idleRunner is how long a sync saga's goroutine waits for the next run before it exits.
const idleRunner = 10 * time.Second

// maxLimiterKeys bounds the memory of each failure limiter.
const maxLimiterKeys = 100_000

// NewFailureLimiters builds the per-client and per-endpoint limiters the config asks for
// (nil where a budget is 0, which limits nothing).
func NewFailureLimiters(af config.AuthFailures) (perClient *security.ClientLimiter, perEndpoint *security.FailureLimiter) {
	if af.PerClient > 0 {
		perClient = security.NewClientLimiter(af.PerClient, af.Window, maxLimiterKeys, nil)
	}
	if af.PerEndpoint > 0 {
		perEndpoint = security.NewFailureLimiter(af.PerEndpoint, af.Window, maxLimiterKeys, nil)
	}
	return perClient, perEndpoint
}

// New builds the gateway's HTTP handler.
func New(opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	g := &Gateway{opts: opts, clients: opts.ClientLimiter, rejections: NewRejections(), sagaRunners: warm.New(idleRunner)}
	if opts.Tracing != nil {
		g.tracer = opts.Tracing.Tracer("github.com/pushbackd/pushbackd/gateway")
	}
	g.unauthorized, _ = Answer{Status: http.StatusText(http.StatusUnauthorized), Code: http.StatusUnauthorized, Message: unauthorizedMessage}.appendJSON(nil)
	_, g.endpoints = NewFailureLimiters(opts.Config.Current().Server.Limits.AuthFailures)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = g.handleError
	e.Use(g.observe)
	// One catch-all route: the path is parsed here, from the escaped form, so that %2F or
	// ".." can never smuggle a separator past the router.
	e.Any("/pushback/*", g.handle)
	e.Any("/oauth/*", g.token)
	e.RouteNotFound("/*", func(c echo.Context) error { return errNotFound })
	g.echo = e
	return g
}

// Rejections are the latest requests refused for their body's schema.
func (g *Gateway) Rejections() *Rejections { return g.rejections }

// ServeHTTP makes the gateway an http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.echo.ServeHTTP(w, r) }

// Wait blocks until sync sagas that outlived their request have finished, or ctx ends.
func (g *Gateway) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Answer is the JSON every pushback answer has (DESIGN §5).
type Answer struct {
	Status    string `json:"status"`
	Code      int    `json:"code"`
	Message   string `json:"message,omitempty"`
	RunID     string `json:"run_id,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// Errors say where a body fails its endpoint's schema (400 only).
	Errors []payload.Problem `json:"errors,omitempty"`
}

// httpError is an answer decided before the saga runs.
type httpError struct {
	code     int
	message  string
	header   http.Header
	problems []payload.Problem
	// challenge is the 401's WWW-Authenticate: a field, not a header map, since every
	// refused guess builds one.
	challenge string
}

func (e *httpError) Error() string { return e.message }

var errNotFound = &httpError{code: http.StatusNotFound, message: "no such pushback endpoint"}

// unauthorizedMessage is the one answer every authentication failure gets, whatever the
// reason, so a prober learns nothing from it. The reason goes to the log.
const unauthorizedMessage = "authentication failed"

// observe counts every answer once it is written, errors included.
func (g *Gateway) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		x := &exchange{Context: c}
		if err := next(x); err != nil {
			g.handleError(err, x) // what c.Error does, with the labels in reach
		}
		g.opts.Observer.Request(x.partner, x.endpoint, c.Response().Status, x.reason)
		if x.span != nil {
			endServerSpan(x.span, c.Response().Status)
		}
		return nil
	}
}

func (g *Gateway) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	// errors.AsType, not errors.As: As's target would escape, two allocations per error
	// answer, and a 401 is the answer anyone can make us write.
	he, ok := errors.AsType[*httpError](err)
	if !ok {
		if ee, isEcho := errors.AsType[*echo.HTTPError](err); isEcho {
			// Echo's own errors (its router's 404/405) keep their code, in our shape.
			he = &httpError{code: ee.Code, message: strings.ToLower(http.StatusText(ee.Code))}
		} else {
			g.opts.Logger.Error("unhandled error", zap.Error(err), zap.String("request_id", requestID(c)))
			he = &httpError{code: http.StatusInternalServerError, message: "internal error"}
		}
	}
	for k, vs := range he.header {
		c.Response().Header()[k] = vs
	}
	if he.challenge != "" {
		c.Response().Header()[echo.HeaderWWWAuthenticate] = []string{he.challenge}
	}
	if he.code == http.StatusUnauthorized && he.message == unauthorizedMessage && he.problems == nil {
		// Every refused guess gets the same body: encoded once, in New.
		writeEncoded(c, he.code, g.unauthorized)
		return
	}
	writeJSON(c, he.code, Answer{Status: http.StatusText(he.code), Code: he.code, Message: he.message, Errors: he.problems})
}

func writeJSON(c echo.Context, code int, v any) {
	var b []byte
	var err error
	if a, ok := v.(Answer); ok {
		b, err = a.appendJSON(make([]byte, 0, 256))
	} else {
		b, err = jsonenc.AppendValue(make([]byte, 0, 256), v)
	}
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"status":"Internal Server Error","code":500,"message":"answer could not be encoded"}`)
	}
	writeEncoded(c, code, b)
}

// writeEncoded sends b, already JSON, as the answer.
func writeEncoded(c echo.Context, code int, b []byte) {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	c.Response().WriteHeader(code)
	// Two writes into the response's buffer, not append(b, '\n'): b may be a run's
	// recorded answer, which a worker may be encoding meanwhile.
	_, _ = c.Response().Write(b)
	_, _ = c.Response().Write(newline)
}

var newline = []byte{'\n'}

func requestID(c echo.Context) string { return exchangeOf(c).requestID }

// newRequestID keeps a sender's X-Request-Id when it is short and plain, so both sides can
// grep for the same id; otherwise it makes one: 96 random bits, from math/rand/v2's
// per-thread generator. The id correlates lines and answers and guards nothing, so it needs
// no crypto/rand, whose read was 1% of the CPU of answering a bad signature.
func newRequestID(given string) string {
	if n := len(given); n > 0 && n <= 64 && strings.Trim(given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == "" {
		return given
	}
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

// splitPath parses /pushback/{partner}/{endpoint} or /pushback/{partner}/{site}/{endpoint}
// from the escaped path. Any segment that is not a valid id (upper case, "..", "%2F", empty)
// makes the path unknown. It allocates nothing: every request, a guess included, comes here.
func splitPath(escaped string) (partner, site, endpoint string, ok bool) {
	rest, found := strings.CutPrefix(escaped, "/pushback/")
	if !found {
		return "", "", "", false
	}
	var parts [3]string
	n := 0
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if n == len(parts) || !validID(seg) {
			return "", "", "", false
		}
		parts[n], n = seg, n+1
		if !more {
			break
		}
		rest = tail
	}
	switch n {
	case 2:
		return parts[0], "", parts[1], true
	case 3:
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// validID is config.IDPattern, ^[a-z0-9][a-z0-9-]{0,62}$, without the regexp machine.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func (g *Gateway) handle(c echo.Context) error {
	x := exchangeOf(c)
	r := c.Request()
	reqID := newRequestID(r.Header.Get(echo.HeaderXRequestID))
	x.requestID = reqID
	c.Response().Header().Set(echo.HeaderXRequestID, reqID)

	cfg := g.opts.Config.Current()
	partner, site, endpoint, ok := splitPath(r.URL.EscapedPath())
	if !ok {
		return errNotFound
	}
	route, ok := cfg.Lookup(partner, site, endpoint)
	if !ok {
		return errNotFound
	}
	x.partner, x.endpoint = partner, endpoint
	if r.Method != http.MethodPost {
		return &httpError{code: http.StatusMethodNotAllowed, message: "pushback endpoints accept POST only",
			header: http.Header{"Allow": {http.MethodPost}}}
	}
	log := newReqLog(g.opts.Logger, reqID, partner, site, endpoint)

	var arrived time.Time
	if g.tracer != nil {
		arrived = time.Now()
	}
	remote := cfg.Server.Proxy.ClientAddr(r)
	verifier := route.Endpoint.Verifier()
	// A client out of tries is refused before its body is read: guessing must not cost us
	// a megabyte per guess.
	if blocked, wait := g.clients.Blocked(remote); blocked {
		g.opts.Observer.AuthFailure(partner, site, endpoint, verifier.Method(), security.ReasonRateLimited)
		log.Warn("client out of authentication tries; refusing", zap.Stringer("remote_ip", remote))
		return tooManyFailures(wait)
	}
	raw, err := readBody(r, c.Response(), cfg.Server.Limits.MaxBodyBytes)
	if err != nil {
		return err
	}
	// No query, no map: a guess with a bare URL parses nothing. Verifiers only read it.
	var query url.Values
	if r.URL.RawQuery != "" {
		query = r.URL.Query()
	}
	sreq := &security.Request{Header: r.Header, Query: query, Body: raw, Method: r.Method, Host: r.Host,
		Path: r.URL.EscapedPath(), RemoteIP: remote, Partner: partner, Now: g.opts.Now()}
	if err := verifier.Verify(sreq); err != nil {
		return g.refuse(err, route, site, remote, log)
	}
	if g.tracer != nil {
		log = log.With(zap.String("trace_id", g.startServerSpan(c, arrived, partner, site, endpoint)))
	}
	client := remote.String() // after the refusals: a guess need not format the address
	if query == nil {
		query = url.Values{} // what the saga and the stored request always had
	}
	contentType := r.Header.Get(echo.HeaderContentType)
	body, err := parseBody(contentType, raw)
	if err != nil {
		log.Info("body rejected", zap.String("content_type", contentType), zap.Error(err))
		x.reason = ReasonUnparseable
		return &httpError{code: http.StatusBadRequest, message: err.Error()}
	}
	// The schema is checked before anything is recorded: a refused body leaves no run.
	if ps := route.Endpoint.PayloadSchema(); ps != nil {
		if problems := ps.Check(body); problems != nil {
			return g.refuseBody(c, route, site, reqID, client, ps, problems, log)
		}
	}

	runID, err := uuid.NewV7()
	if err != nil {
		return err
	}
	req := saga.Request{Method: r.Method, Path: r.URL.Path, Headers: r.Header, Query: query,
		RemoteIP: client, ContentType: contentType, Raw: raw, Body: body, ReceivedAt: g.opts.Now()}
	inv := NewInvocation(route, route.Endpoint.SagaRef(), runID.String(), req)
	log = log.With(zap.String("run_id", inv.RunID))
	sec := route.Endpoint.Security.Resolved()
	run := &store.Run{ID: inv.RunID, Partner: route.Partner.ID, Endpoint: route.Endpoint.Name,
		Saga: inv.Saga.Name, SagaVersion: inv.Saga.Version, ReceivedAt: req.ReceivedAt,
		Request: store.Request{Method: r.Method, Path: r.URL.Path, Headers: sec.RedactHeaders(r.Header), Query: sec.RedactQuery(query),
			RemoteIP: req.RemoteIP, ContentType: contentType, Body: raw}}
	if route.Site != nil {
		run.Site = route.Site.ID
	}
	if g.tracer != nil {
		run.TraceParent = tracing.TraceParent(c.Request().Context())
		trace.SpanFromContext(c.Request().Context()).SetAttributes(attribute.String("pushbackd.run_id", run.ID))
	}
	// Keys are scoped to the URL the request came to: a site's endpoint, even one it
	// inherits, never shares keys with the partner's own or another site's.
	scope := store.KeyScope{Partner: run.Partner, Site: run.Site, Endpoint: run.Endpoint}
	opts := store.CreateOptions{IdempotencyTTL: cfg.Server.History.IdempotencyTTL}
	if t := route.Endpoint.Idempotency(); t != nil {
		// A body without the key's field is still accepted: refusing it would make senders
		// like Encompass, which treat 4xx as delivered, drop the event for good.
		if key, err := t.Render(inv); err != nil || key == "" {
			log.Warn("idempotency_key could not be computed; accepting without duplicate protection", zap.Error(err))
		} else {
			run.IdempotencyKey = store.IdempotencyKey(scope, key)
		}
	}
	// A signed message id (Standard Webhooks' webhook-id, a timestamped signature's signed
	// content) is remembered for as long as a replay of the message could pass
	// verification, so a replay runs nothing.
	if id, remember := verifier.MessageID(sreq); id != "" {
		run.MessageKey, opts.MessageTTL = store.MessageKey(scope, id), remember
	}
	if limit := route.Endpoint.MaxInFlight; limit > 0 {
		n := g.counter(route.Partner.ID + "/" + route.Endpoint.Name)
		defer n.Add(-1)
		if n.Add(1) > int64(limit) {
			log.Warn("endpoint at max_in_flight; refusing", zap.Int("max_in_flight", limit))
			return &httpError{code: http.StatusTooManyRequests, message: "too many requests in flight for this endpoint; retry later",
				header: http.Header{"Retry-After": {"1"}}}
		}
	}
	if route.Endpoint.Mode == config.ModeSync {
		return g.runSync(c, run, inv, opts, cfg.Server.Limits.SyncTimeout, log)
	}
	return g.accept(c, run, inv, opts, route.Endpoint.AcceptStatus, log)
}

// refuse answers a failed authentication: the same 401 whatever the reason, or 429 once
// the endpoint's failure budget is spent. The reason goes to the log and the metric.
func (g *Gateway) refuse(err error, route config.Route, site string, client netip.Addr, log *reqLog) error {
	method := route.Endpoint.Verifier().Method()
	reason := security.Reason("unknown")
	if f, ok := errors.AsType[*security.Failure](err); ok {
		reason = f.Reason
	}
	g.opts.Observer.AuthFailure(route.Partner.ID, site, route.Endpoint.Name, method, reason)
	// Guessing is the one path an attacker can drive without a credential: the line's
	// fields (err.Error(), the address) are built only when warnings are written.
	if log.enabled(zapcore.WarnLevel) {
		log.Warn("authentication failed", zap.String("method", string(method)),
			zap.String("reason", string(reason)), zap.String("detail", err.Error()), zap.Stringer("remote_ip", client))
	}
	g.clients.Fail(client)
	if g.endpoints != nil {
		if key := route.Partner.ID + "/" + route.Endpoint.Name; g.endpoints.Fail(key) {
			_, wait := g.endpoints.Blocked(key)
			return tooManyFailures(wait)
		}
	}
	return &httpError{code: http.StatusUnauthorized, message: unauthorizedMessage, challenge: security.Challenge(method)}
}

// refuseBody answers a body that fails its endpoint's schema: 400 with where and why, so the
// sender can fix it. Answering 4xx tells senders such as Encompass that the event was
// delivered, so the operator can look at the latest ones on the admin API.
func (g *Gateway) refuseBody(c echo.Context, route config.Route, site, reqID, client string, ps *payload.Schema, problems []payload.Problem, log *reqLog) error {
	exchangeOf(c).reason = ReasonSchema
	g.rejections.Add(Rejection{At: g.opts.Now(), Partner: route.Partner.ID, Site: site, Endpoint: route.Endpoint.Name,
		RequestID: reqID, RemoteIP: client, Schema: ps.File(), Problems: problems})
	log.Info("body does not match the endpoint's schema", zap.String("schema", ps.File()), zap.Stringer("problem", problems[0]), zap.Int("problems", len(problems)))
	msg := "body does not match the endpoint's schema: " + problems[0].String()
	if n := len(problems) - 1; n > 0 {
		msg += " (and " + strconv.Itoa(n) + " more in errors)"
	}
	return &httpError{code: http.StatusBadRequest, message: msg, problems: problems}
}

// tooManyFailures is the answer once a failure budget is spent: like the 401, it says
// nothing about which part of a credential was wrong.
func tooManyFailures(wait time.Duration) error {
	secs := int(wait.Seconds()) + 1
	return &httpError{code: http.StatusTooManyRequests, message: "too many failed authentications; retry later",
		header: http.Header{"Retry-After": {strconv.Itoa(secs)}}}
}

func (g *Gateway) counter(key string) *atomic.Int64 {
	if n, ok := g.inFlight.Load(key); ok {
		return n.(*atomic.Int64)
	}
	n, _ := g.inFlight.LoadOrStore(key, new(atomic.Int64))
	return n.(*atomic.Int64)
}

// NewInvocation is what a saga run sees of a request on route: the one place the gateway,
// plan and resume-after-restart build it, so all three agree.
func NewInvocation(route config.Route, s *saga.Saga, runID string, req saga.Request) *saga.Invocation {
	inv := &saga.Invocation{
		RunID:    runID,
		Saga:     s,
		Partner:  saga.Ref{ID: route.Partner.ID, Name: route.Partner.Name},
		Endpoint: route.Endpoint.Name,
		Settings: route.Settings(),
		Secrets:  route.Secrets(),
		Egress:   route.Egress(),
		Request:  req,
	}
	if route.Site != nil {
		inv.Site = &saga.Ref{ID: route.Site.ID, Name: route.Site.Name}
	}
	return inv
}

// storeFailure turns a failure to record a run into the answer DESIGN §5 gives it: 503
// with Retry-After, since nothing was stored and the sender should come back.
func storeFailure(err error, log *reqLog) error {
	switch {
	case errors.Is(err, dispatch.ErrQueueFull):
		log.Warn("run queue full; refusing", zap.Error(err))
		return &httpError{code: http.StatusServiceUnavailable, message: "too many runs waiting; retry later", header: http.Header{"Retry-After": {"5"}}}
	case errors.Is(err, dispatch.ErrStopped):
		return &httpError{code: http.StatusServiceUnavailable, message: "shutting down; retry later", header: http.Header{"Retry-After": {"5"}}}
	}
	log.Error("cannot record the run", zap.Error(err))
	return &httpError{code: http.StatusServiceUnavailable, message: "storage unavailable; nothing was recorded, retry later", header: http.Header{"Retry-After": {"30"}}}
}

func duplicateAnswer(c echo.Context, original string) error {
	writeJSON(c, http.StatusOK, Answer{Status: "OK", Code: http.StatusOK, Message: "duplicate of an accepted request; nothing ran", RunID: original, Duplicate: true})
	return nil
}

// accept records an async run and answers only once it is on disk.
func (g *Gateway) accept(c echo.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions, status int, log *reqLog) error {
	answer := Answer{Status: http.StatusText(status), Code: status, Message: "accepted", RunID: run.ID}
	b, err := answer.appendJSON(nil)
	if err != nil {
		return err
	}
	run.Answer = &store.Answer{Status: status, Body: b}
	dup, err := g.opts.Runs.Accept(c.Request().Context(), run, inv, opts)
	if err != nil {
		return storeFailure(err, log)
	}
	if dup != "" {
		log.Info("duplicate pushback", zap.String("original_run_id", dup))
		return duplicateAnswer(c, dup)
	}
	writeEncoded(c, status, b) // the answer just recorded
	return nil
}

type syncOutcome struct {
	res *saga.Result
	dup string
	err error
}

// runSync runs the saga while the sender waits, up to timeout. A saga that takes longer is
// not cancelled — half-done work is worse than late work — the sender gets 504 with the
// run id and the run finishes on its own. A retry wait that would end after the timeout
// suspends the run instead: the sender gets the 504 at once, and a worker finishes the run
// when the wait is over.
func (g *Gateway) runSync(c echo.Context, run *store.Run, inv *saga.Invocation, opts store.CreateOptions, timeout time.Duration, log *reqLog) error {
	inv.SleepUntil = g.opts.Now().Add(timeout)
	done := make(chan syncOutcome, 1)
	ctx := context.WithoutCancel(c.Request().Context())
	g.running.Add(1)
	g.sagaRunners.Go(func() {
		defer g.running.Done()
		res, dup, err := g.opts.Runs.RunSync(ctx, run, inv, opts)
		done <- syncOutcome{res, dup, err}
	})
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	stillRunning := func() error {
		writeJSON(c, http.StatusGatewayTimeout, Answer{Status: http.StatusText(http.StatusGatewayTimeout), Code: http.StatusGatewayTimeout,
			Message: "the saga is still running; its result will be in the run history", RunID: inv.RunID})
		return nil
	}
	var out syncOutcome
	select {
	case out = <-done:
	case <-timer.C:
		log.Warn("sync saga exceeded sync_timeout; it keeps running", zap.Duration("sync_timeout", timeout))
		return stillRunning()
	}
	switch {
	case out.err == nil && out.res != nil && (out.res.Status == saga.StatusWaiting || out.res.Status == saga.StatusInterrupted):
		log.Warn("sync saga must wait past sync_timeout; it goes on without the sender", zap.Duration("sync_timeout", timeout),
			zap.String("status", out.res.Status), zap.Time("until", out.res.WakeAt))
		return stillRunning()
	case out.err != nil:
		return storeFailure(out.err, log)
	case out.dup != "":
		log.Info("duplicate pushback", zap.String("original_run_id", out.dup))
		return duplicateAnswer(c, out.dup)
	}
	res := out.res
	log.Info("saga finished", zap.String("saga", inv.Saga.Name), zap.String("status", res.Status))
	return writeSagaAnswer(c, SyncAnswer(inv.RunID, inv.Saga.Name, res), inv.RunID)
}

// SyncAnswer is what the sender of a sync request is told when its run has ended: the
// saga's own answer (a respond step) if it gave one, else 200 or 502. The dispatcher records
// the same answer in the run before the gateway sends it, so the history shows what the
// sender got. Nil while the run has not ended.
func SyncAnswer(runID, sagaName string, res *saga.Result) *saga.Answer {
	switch {
	case res.Answer != nil:
		return res.Answer
	case res.Status == saga.StatusSucceeded:
		return &saga.Answer{Status: http.StatusOK, Body: Answer{Status: "OK", Code: http.StatusOK, Message: "saga " + sagaName + " succeeded", RunID: runID}}
	case res.Status == saga.StatusWaiting || res.Status == saga.StatusInterrupted:
		return nil
	}
	// The step and a generic reason only: res.Error names downstream URLs, answers and dial
	// errors, which are the operator's to read in the run record, not the sender's.
	msg := res.SenderError
	if msg == "" {
		msg = "saga " + sagaName + " failed"
	}
	return &saga.Answer{Status: http.StatusBadGateway, Body: Answer{Status: http.StatusText(http.StatusBadGateway), Code: http.StatusBadGateway, Message: msg, RunID: runID}}
}

// writeSagaAnswer sends a `respond` step's answer. Without a body the sender gets the usual
// JSON shape with the chosen status; with one, the saga decides the shape — some senders
// expect a particular answer.
func writeSagaAnswer(c echo.Context, a *saga.Answer, runID string) error {
	code := a.Status
	if code == 0 {
		code = http.StatusOK
	}
	for k, v := range a.Headers {
		c.Response().Header().Set(k, v)
	}
	if a.Body == nil {
		writeJSON(c, code, Answer{Status: http.StatusText(code), Code: code, RunID: runID})
		return nil
	}
	if a.BodyJSON != nil {
		writeEncoded(c, code, a.BodyJSON)
		return nil
	}
	writeJSON(c, code, a.Body)
	return nil
}

// readBody reads the whole body once, never more than limit bytes; over the limit is 413.
func readBody(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, error) {
	// Built only when needed: every request would otherwise pay for the message.
	tooLarge := func() error {
		return &httpError{code: http.StatusRequestEntityTooLarge, message: "body larger than " + strconv.FormatInt(limit, 10) + " bytes"}
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	size := r.ContentLength
	if size < 0 || size > 64<<10 {
		size = 512
	}
	buf := make([]byte, 0, size+1) // +1 so reading to EOF needs no growth when the length is right
	for {
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge()
			}
			return nil, &httpError{code: http.StatusBadRequest, message: "could not read the request body"}
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}
