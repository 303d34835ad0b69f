// Package admin is the operator API on its own listener: endpoints and sagas as configured,
// saga editing with versions, plans, run history and replay, reloads, health and metrics.
// Everything under /admin/v1 needs the admin bearer token; every answer is JSON except the
// saga YAML itself. Every route answers only to the listener's own host names.
package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/tracing"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// Control is what the API asks of the running process.
type Control interface {
	Current() *config.Config
	// Reload re-reads the configuration; a failure keeps the running one and returns
	// yamlconf.Errors.
	Reload(ctx context.Context, origin string) error
	// ApplySaga validates src as saga name exactly like start-up, then writes, versions and
	// applies it; invalid YAML returns yamlconf.Errors and changes nothing.
	ApplySaga(ctx context.Context, name string, src []byte, origin string) (store.SagaVersion, error)
	// Replay starts a new async run from run id's stored request.
	Replay(ctx context.Context, id string) (string, error)
	// Retry starts a new async run of failed run id from its failed step; a run that cannot
	// be retried is refused with ErrRefused.
	Retry(ctx context.Context, id string) (string, error)
	// Cancel cancels unfinished run id and returns its status after: cancelled, or the one
	// it keeps until its worker has compensated it. A final run is refused with ErrRefused.
	Cancel(ctx context.Context, id string) (store.Status, error)
	// Ready says whether the config is loaded and the store writable; LastReload is the
	// error of the last reload, nil when it succeeded.
	Ready(ctx context.Context) error
	LastReload() (at time.Time, err error)
}

// Store is what the API reads from the store: run history and saga versions. It never
// writes; Control does.
type Store interface {
	List(ctx context.Context, f store.Filter) (runs []*store.Run, next string, err error)
	GetRun(ctx context.Context, id string) (*store.Run, error)
	SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error)
	SagaVersion(ctx context.Context, name string, number int) (store.SagaVersion, error)
}

// Options are the API's collaborators.
type Options struct {
	Control Control
	Store   Store
	Token   security.Secret
	// Limiter counts failed token checks per client address; nil limits nothing.
	Limiter *security.ClientLimiter
	Metrics http.Handler
	Logger  *zap.Logger
	// Rejections are the gateway's latest schema rejections; nil lists none.
	Rejections RejectionSource
	// Clock anchors relative times in run filters (since=2h); nil is the system clock.
	Clock store.Clock
	// Jobs runs bulk replays; nil answers 404 on their routes.
	Jobs Jobs
	// Console builds the web console served at / on this listener, given the API it calls
	// in-process; nil serves no console. It sits behind the same Host check as the API.
	Console func(api http.Handler) http.Handler
}

// SagaValidator is a Control that can check a saga draft without applying it; the API's
// validate route answers 404 without one.
type SagaValidator interface {
	// ValidateSaga checks src as saga name exactly like ApplySaga and changes nothing;
	// invalid YAML returns yamlconf.Errors.
	ValidateSaga(ctx context.Context, name string, src []byte) error
}

// RejectionSource lists the latest requests refused for their body's schema, newest first.
type RejectionSource interface {
	Recent(partner, site, endpoint string, limit int) []gateway.Rejection
}

// API serves the admin listener.
type API struct {
	o      Options
	echo   *echo.Echo
	bearer security.Verifier
}

// maxSagaBytes bounds a PUT body: what the YAML parser accepts from a file, so an edit
// through the API and the same file on disk meet one limit.
const maxSagaBytes = yamlconf.MaxBytes

// SagaName is what a saga file may be called: it becomes a path in sagas_dir, so nothing
// that could climb out of it. It is the version history's own rule, so whatever the API
// accepts can be versioned.
var SagaName = store.SagaNamePattern

// New builds the API. The token must not be empty.
func New(o Options) (*API, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = store.SystemClock{}
	}
	bearer, err := security.New(security.Config{Method: security.Bearer, Tokens: []security.Secret{o.Token}})
	if err != nil {
		return nil, err
	}
	a := &API{o: o, bearer: bearer}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.handleError
	e.Pre(a.checkHost)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", a.readyz)
	e.GET("/metrics", echo.WrapHandler(o.Metrics))
	g := e.Group("/admin/v1", a.authenticate)
	g.GET("/endpoints", a.endpoints)
	g.GET("/sagas", a.sagas)
	g.GET("/sagas/:name", a.sagaSource)
	g.PUT("/sagas/:name", a.putSaga)
	g.GET("/sagas/:name/versions", a.sagaVersions)
	g.GET("/sagas/:name/versions/:n", a.sagaVersion)
	g.POST("/sagas/:name/versions/:n/restore", a.restoreSaga)
	g.POST("/sagas/:name/plan", a.plan)
	g.POST("/sagas/:name/test", a.testSaga)
	g.POST("/sagas/:name/validate", a.validateSaga)
	g.GET("/rejections", a.rejections)
	g.GET("/runs", a.listRuns)
	g.GET("/runs/counts", a.runCounts)
	g.GET("/runs/:id", a.getRun)
	g.POST("/runs/replay", a.bulkReplay)
	g.POST("/runs/:id/replay", a.replay)
	g.GET("/jobs", a.listJobs)
	g.GET("/jobs/:id", a.getJob)
	g.POST("/jobs/:id/cancel", a.cancelJob)
	g.POST("/runs/:id/retry", a.retry)
	g.POST("/runs/:id/cancel", a.cancel)
	g.POST("/reload", a.reload)
	g.RouteNotFound("/*", func(c echo.Context) error { return errNotFound })
	if o.Console != nil {
		e.RouteNotFound("/*", echo.WrapHandler(o.Console(a)))
	} else {
		e.RouteNotFound("/*", func(c echo.Context) error { return errNotFound })
	}
	a.echo = e
	return a, nil
}

// ServeHTTP makes the API an http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.echo.ServeHTTP(w, r) }

type apiError struct {
	code    int
	message string
	errors  yamlconf.Errors
}

func (e *apiError) Error() string { return e.message }

var errNotFound = &apiError{code: http.StatusNotFound, message: "not found"}

func (a *API) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *apiError
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &ee):
		ae = &apiError{code: ee.Code, message: strings.ToLower(http.StatusText(ee.Code))}
	case errors.Is(err, store.ErrUnavailable):
		// The database is away (or not open yet): the same answer pushbacks get, so a
		// script knows to come back rather than report a bug.
		a.o.Logger.Warn("admin API: storage unavailable", zap.Error(err), zap.String("path", c.Request().URL.Path))
		c.Response().Header().Set("Retry-After", "30")
		ae = &apiError{code: http.StatusServiceUnavailable, message: "storage unavailable; retry later"}
	default:
		a.o.Logger.Error("admin API error", zap.Error(err), zap.String("path", c.Request().URL.Path))
		ae = &apiError{code: http.StatusInternalServerError, message: "internal error"}
	}
	body := map[string]any{"error": ae.message}
	if ae.errors != nil {
		body["errors"] = ae.errors
	}
	_ = c.JSON(ae.code, body)
}

// checkHost answers 421 to a request for any name the listener was not configured with.
// A web page can have a visitor's browser send requests to this listener by making its own
// name resolve to the listener's address (DNS rebinding); the browser then still sends the
// page's name as Host, and that is what is refused. IP literals need no entry (rebinding
// needs a name) nor does localhost (no outside DNS answers for it).
func (a *API) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if host := c.Request().Host; !hostAllowed(host, a.o.Control.Current().Server.Admin.Hosts) {
			a.o.Logger.Warn("admin request for a host name not in admin.hosts; refused", zap.String("host", host),
				zap.String("path", c.Request().URL.Path), zap.String("remote", c.Request().RemoteAddr))
			return &apiError{code: http.StatusMisdirectedRequest,
				message: "this listener answers only to IP addresses, localhost and the names in admin.hosts"}
		}
		return next(c)
	}
}

// hostAllowed applies checkHost's rule to a Host header: names are lower case, without
// port or trailing dot, as config stores admin.hosts.
func hostAllowed(hostport string, names []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")), ".")
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil || host == "localhost" {
		return true
	}
	return slices.Contains(names, host)
}

// authenticate checks the admin bearer token in constant time; every failure is the same
// 401. Failures are charged to the client address the proxy rule gives, the same one the
// pushback listener charges.
func (a *API) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		client := a.o.Control.Current().Server.Proxy.ClientAddr(r)
		if blocked, wait := a.o.Limiter.Blocked(client); blocked {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			return &apiError{code: http.StatusTooManyRequests, message: "too many failed authentications; retry later"}
		}
		if err := a.bearer.Verify(&security.Request{Header: r.Header}); err != nil {
			// A request that shows no token at all (a browser's CORS preflight, a forgotten
			// -H) guesses nothing, so it costs nothing; anything else is a guess.
			if presentsToken(r.Header) {
				a.o.Limiter.Fail(client)
			}
			a.o.Logger.Warn("admin authentication failed", zap.String("path", r.URL.Path), zap.Stringer("client", client),
				zap.String("remote", r.RemoteAddr), zap.String("detail", err.Error()))
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="pushbackd-admin"`)
			return &apiError{code: http.StatusUnauthorized, message: "a valid admin token is required (Authorization: Bearer <token>)"}
		}
		return next(c)
	}
}

// presentsToken reports whether h carries any Authorization value at all.
func presentsToken(h http.Header) bool {
	for _, v := range h.Values(echo.HeaderAuthorization) {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

func (a *API) readyz(c echo.Context) error {
	body := map[string]any{"status": "ready"}
	at, lastErr := a.o.Control.LastReload()
	reload := map[string]any{"ok": lastErr == nil}
	if !at.IsZero() {
		reload["at"] = at
	}
	if lastErr != nil {
		reload["errors"] = yamlconf.AsErrors(lastErr)
	}
	body["last_reload"] = reload
	if err := a.o.Control.Ready(c.Request().Context()); err != nil {
		body["status"], body["reason"] = "not ready", err.Error()
		return c.JSON(http.StatusServiceUnavailable, body)
	}
	return c.JSON(http.StatusOK, body)
}

type endpointView struct {
	URL       string `json:"url"`
	Partner   string `json:"partner"`
	Site      string `json:"site,omitempty"`
	Endpoint  string `json:"endpoint"`
	Scope     string `json:"scope"` // partner | site
	Inherited bool   `json:"inherited,omitempty"`
	Method    string `json:"method"`
	Preset    string `json:"preset,omitempty"`
	Saga      string `json:"saga"`
	Mode      string `json:"mode"`
	Schema    string `json:"schema,omitempty"` // the payload schema's file, as configured
	// Auth is what a sender sets for the endpoint's security method, values as placeholders
	// ($TOKEN, $SIGNATURE); Signed says they are computed per request (pushbackd sign).
	Auth   []security.Placeholder `json:"auth"`
	Signed bool                   `json:"signed,omitempty"`
}

func (a *API) endpoints(c echo.Context) error {
	cfg := a.o.Control.Current()
	out := []endpointView{}
	view := func(p *config.Partner, s *config.Site, e *config.Endpoint, inherited bool) endpointView {
		v := endpointView{URL: "/pushback/" + p.ID, Partner: p.ID, Endpoint: e.Name, Scope: "partner",
			Method: string(e.Security.Method), Preset: e.Security.Resolved().Preset, Saga: e.Saga, Mode: string(e.Mode), Inherited: inherited}
		if e.Schema != nil {
			v.Schema = e.Schema.Path
		}
		v.Auth, v.Signed = security.Placeholders(e.Security.Resolved())
		if s != nil {
			v.URL += "/" + s.ID
			v.Site, v.Scope = s.ID, "site"
		}
		v.URL += "/" + e.Name
		return v
	}
	for _, p := range cfg.Partners {
		for _, e := range p.Endpoints {
			out = append(out, view(p, nil, e, false))
		}
		for _, s := range p.Sites {
			own := map[string]bool{}
			for _, e := range s.Endpoints {
				own[e.Name] = true
				out = append(out, view(p, s, e, false))
			}
			for _, e := range p.Endpoints {
				if !own[e.Name] {
					out = append(out, view(p, s, e, true))
				}
			}
		}
	}
	// Where senders reach the endpoints: the pushback listener as configured.
	listener := map[string]any{"listen": a.pushbackListen(cfg), "tls": cfg.Server.TLS != nil}
	return c.JSON(http.StatusOK, map[string]any{"endpoints": out, "pushback": listener})
}

// maxRejections is every rejection the gateway keeps.
const maxRejections = gateway.RejectionsPerEndpoint * gateway.RejectionEndpoints

// rejections lists the latest schema rejections, filtered by partner, site and endpoint.
func (a *API) rejections(c echo.Context) error {
	q := c.QueryParams()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRejections {
			return &apiError{code: http.StatusBadRequest, message: "limit must be 1.." + strconv.Itoa(maxRejections)}
		}
		limit = n
	}
	out := []gateway.Rejection{}
	if a.o.Rejections != nil {
		if r := a.o.Rejections.Recent(q.Get("partner"), q.Get("site"), q.Get("endpoint"), limit); r != nil {
			out = r
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"rejections": out})
}

func (a *API) sagas(c echo.Context) error {
	cfg := a.o.Control.Current()
	type sagaView struct {
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
		Hash        string `json:"hash"`
		Version     int    `json:"version,omitempty"` // number of the applied version in history
		Versions    int    `json:"versions"`
	}
	out := []sagaView{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Sagas)) {
		s := cfg.Sagas[name]
		v := sagaView{Name: name, Description: s.Description, Hash: s.Version}
		versions, err := a.o.Store.SagaVersions(c.Request().Context(), name)
		if err != nil {
			return err
		}
		v.Versions = len(versions)
		for _, sv := range versions {
			if strings.HasPrefix(sv.Hash, s.Version) {
				v.Version = sv.Number
				break
			}
		}
		out = append(out, v)
	}
	return c.JSON(http.StatusOK, map[string]any{"sagas": out})
}

func (a *API) sagaName(c echo.Context) (string, error) {
	name := c.Param("name")
	if !SagaName.MatchString(name) {
		return "", &apiError{code: http.StatusBadRequest, message: "a saga name must match " + SagaName.String()}
	}
	return name, nil
}

func (a *API) sagaSource(c echo.Context) error {
	name, err := a.sagaName(c)
	if err != nil {
		return err
	}
	s, ok := a.o.Control.Current().Sagas[name]
	if !ok {
		return &apiError{code: http.StatusNotFound, message: "no saga " + name}
	}
	return c.Blob(http.StatusOK, "text/yaml; charset=utf-8", s.Source)
}

func (a *API) putSaga(c echo.Context) error {
	name, err := a.sagaName(c)
	if err != nil {
		return err
	}
	src, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxSagaBytes))
	if err != nil {
		return &apiError{code: http.StatusRequestEntityTooLarge, message: "a saga file is limited to 1 MiB"}
	}
	return a.apply(c, name, src, "admin")
}

// validateSaga checks a draft as PUT would and changes nothing: the console's editor calls
// it while the admin types. The answer is 200 {"errors": []} or 200 with the errors, so a
// draft full of mistakes is not an HTTP failure.
func (a *API) validateSaga(c echo.Context) error {
	name, err := a.sagaName(c)
	if err != nil {
		return err
	}
	v, ok := a.o.Control.(SagaValidator)
	if !ok {
		return &apiError{code: http.StatusNotFound, message: "this server cannot validate a saga without saving it"}
	}
	src, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxSagaBytes))
	if err != nil {
		return &apiError{code: http.StatusRequestEntityTooLarge, message: "a saga file is limited to 1 MiB"}
	}
	errs := yamlconf.Errors{}
	if err := v.ValidateSaga(c.Request().Context(), name, src); err != nil {
		var ye yamlconf.Errors
		if !errors.As(err, &ye) {
			return err
		}
		errs = a.sagaErrors(name, ye)
	}
	return c.JSON(http.StatusOK, map[string]any{"valid": len(errs) == 0, "errors": errs})
}

// sagaErrors are the errors of saga name's draft, file names relative, the draft's own
// first. When the draft has errors of its own, every endpoint naming the saga also says it
// did not load: a consequence that adds nothing, so those are left out. Other errors
// elsewhere (a sync endpoint the draft's steps no longer suit) stay.
func (a *API) sagaErrors(name string, errs yamlconf.Errors) yamlconf.Errors {
	cfg := a.o.Control.Current()
	out := relative(errs, cfg)
	own := a.sagaFile(name)
	if slices.ContainsFunc(out, func(e yamlconf.Error) bool { return e.File == own }) {
		out = slices.DeleteFunc(out, func(e yamlconf.Error) bool {
			return e.File != own && strings.Contains(e.Message, config.SagaDidNotLoad)
		})
	}
	slices.SortStableFunc(out, func(x, y yamlconf.Error) int {
		return cmpBool(y.File == own, x.File == own)
	})
	return out
}

// sagaFile is saga name's file as error messages name it: relative to the config directory.
func (a *API) sagaFile(name string) string {
	cfg := a.o.Control.Current()
	return relative(yamlconf.Errors{{File: cfg.SagaFile(name)}}, cfg)[0].File
}

// cmpBool orders true before false when called as cmpBool(y, x).
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func (a *API) apply(c echo.Context, name string, src []byte, origin string) error {
	v, err := a.o.Control.ApplySaga(c.Request().Context(), name, src, origin)
	var ye yamlconf.Errors
	if errors.As(err, &ye) {
		return &apiError{code: http.StatusUnprocessableEntity, message: "the saga is invalid; nothing was changed", errors: a.sagaErrors(name, ye)}
	}
	if err != nil {
		return err
	}
	a.o.Logger.Info("saga applied", zap.String("saga", name), zap.Int("version", v.Number), zap.String("origin", origin))
	return c.JSON(http.StatusOK, versionView(v))
}

// relative strips the config directory from error file names: the admin does not need the
// server's paths, only which file.
func relative(errs yamlconf.Errors, cfg *config.Config) yamlconf.Errors {
	out := make(yamlconf.Errors, len(errs))
	for i, e := range errs {
		e.File = strings.TrimPrefix(strings.TrimPrefix(e.File, cfg.Dir), "/")
		out[i] = e
	}
	return out
}

type sagaVersionView struct {
	Name    string    `json:"name"`
	Version int       `json:"version"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	Origin  string    `json:"origin,omitempty"`
}

func versionView(v store.SagaVersion) sagaVersionView {
	return sagaVersionView{Name: v.Name, Version: v.Number, Hash: v.Hash, Created: v.Created, Origin: v.Origin}
}

func (a *API) sagaVersions(c echo.Context) error {
	name, err := a.sagaName(c)
	if err != nil {
		return err
	}
	versions, err := a.o.Store.SagaVersions(c.Request().Context(), name)
	if err != nil {
		return err
	}
	out := make([]sagaVersionView, len(versions))
	for i, v := range versions {
		out[i] = versionView(v)
	}
	return c.JSON(http.StatusOK, map[string]any{"versions": out})
}

func (a *API) version(c echo.Context) (store.SagaVersion, error) {
	name, err := a.sagaName(c)
	if err != nil {
		return store.SagaVersion{}, err
	}
	n, err := strconv.Atoi(c.Param("n"))
	if err != nil || n < 1 {
		return store.SagaVersion{}, &apiError{code: http.StatusBadRequest, message: "a version is a number from 1"}
	}
	v, err := a.o.Store.SagaVersion(c.Request().Context(), name, n)
	if errors.Is(err, store.ErrNotFound) {
		return v, &apiError{code: http.StatusNotFound, message: "no version " + c.Param("n") + " of saga " + name}
	}
	return v, err
}

func (a *API) sagaVersion(c echo.Context) error {
	v, err := a.version(c)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "text/yaml; charset=utf-8", v.Source)
}

func (a *API) restoreSaga(c echo.Context) error {
	v, err := a.version(c)
	if err != nil {
		return err
	}
	return a.apply(c, v.Name, v.Source, "restore of version "+strconv.Itoa(v.Number))
}

func (a *API) plan(c echo.Context) error {
	name, err := a.sagaName(c)
	if err != nil {
		return err
	}
	sample, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxDraftBytes))
	if err != nil {
		return &apiError{code: http.StatusRequestEntityTooLarge, message: "a plan request is limited to 3 MiB"}
	}
	if isDraft(sample) {
		return a.planDraft(c, name, sample)
	}
	if len(sample) > maxSagaBytes {
		return &apiError{code: http.StatusRequestEntityTooLarge, message: "a sample request is limited to 1 MiB"}
	}
	cfg := a.o.Control.Current()
	if _, ok := cfg.Sagas[name]; !ok {
		return &apiError{code: http.StatusNotFound, message: "no saga " + name}
	}
	p, err := gateway.PlanSample(cfg, name, sample)
	if err != nil {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	return c.JSON(http.StatusOK, p)
}

func (a *API) reload(c echo.Context) error {
	if err := a.o.Control.Reload(c.Request().Context(), "admin"); err != nil {
		var ye yamlconf.Errors
		if errors.As(err, &ye) {
			return &apiError{code: http.StatusUnprocessableEntity, message: "the configuration is invalid; the running one is kept", errors: relative(ye, a.o.Control.Current())}
		}
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "reloaded"})
}

// runView is a run as the API shows it. The request body is text when it is UTF-8, else
// base64; the result is the engine's JSON record.
type runView struct {
	ID          string     `json:"id"`
	Partner     string     `json:"partner"`
	Site        string     `json:"site,omitempty"`
	Endpoint    string     `json:"endpoint"`
	Saga        string     `json:"saga"`
	SagaVersion string     `json:"saga_version"`
	Mode        string     `json:"mode"`
	Status      string     `json:"status"`
	ReceivedAt  time.Time  `json:"received_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	WakeAt      *time.Time `json:"wake_at,omitempty"`
	Attempt     int        `json:"attempt"`
	ReplayOf    string     `json:"replay_of,omitempty"`
	// Links, on GET /runs/{id} only but superseded_by and retry_of: the runs replaying and
	// retrying this one, the run whose debounce superseded it, the run it retries.
	Replays        []string        `json:"replays,omitempty"`
	Retries        []string        `json:"retries,omitempty"`
	SupersededBy   string          `json:"superseded_by,omitempty"`
	RetryOf        string          `json:"retry_of,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	TraceID        string          `json:"trace_id,omitempty"` // the OpenTelemetry trace the run belongs to, when tracing is on
	Error          string          `json:"error,omitempty"`
	Request        *requestView    `json:"request,omitempty"`
	Answer         *answerView     `json:"answer,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	// Progress, on GET /runs/{id} only, is how far an unfinished run has got, from its
	// last checkpoint: what an operator needs to see why a run is waiting.
	Progress *progressView `json:"progress,omitempty"`
}

// progressView is an unfinished run's checkpoint as operators read it: the steps that
// finished, and the action whose retry wait the run is in with the tries it made. The
// records are the engine's own, redacted as a result's are.
type progressView struct {
	Phase         saga.Phase        `json:"phase"`
	Steps         []saga.StepRecord `json:"steps,omitempty"`
	FailedStep    string            `json:"failed_step,omitempty"`
	Error         string            `json:"error,omitempty"`
	Compensations []saga.StepRecord `json:"compensations,omitempty"`
	Current       *currentView      `json:"current,omitempty"`
}

// currentView is the action in progress: a step in the forward phase, the named step's
// compensation while compensating.
type currentView struct {
	Step         string     `json:"step"`
	Action       string     `json:"action,omitempty"`
	Attempts     int        `json:"attempts"`
	WaitUntil    *time.Time `json:"wait_until,omitempty"`
	Tries        []saga.Try `json:"tries,omitempty"`
	TriesDropped int        `json:"tries_dropped,omitempty"`
}

// viewProgress reads an unfinished run's checkpoint; nil when it has none, or one this
// version cannot read.
func viewProgress(r *store.Run) *progressView {
	if r.Status.Final() || len(r.State) == 0 {
		return nil
	}
	var st saga.State
	if json.Unmarshal(r.State, &st) != nil {
		return nil
	}
	p := &progressView{Phase: cmp.Or(st.Phase, saga.PhaseForward), Steps: st.Records, Compensations: st.Compensations}
	if st.Failure != nil {
		p.FailedStep, p.Error = st.Failure.Step, st.Failure.Message
	}
	if st.StepAttempts > 0 {
		p.Current = &currentView{Step: st.Step, Action: st.StepAction, Attempts: st.StepAttempts, WaitUntil: timePtr(st.WaitUntil),
			Tries: st.StepTries, TriesDropped: st.StepTriesDropped}
	}
	return p
}

type requestView struct {
	Method      string              `json:"method"`
	Path        string              `json:"path"`
	Query       string              `json:"query,omitempty"`
	Headers     map[string][]string `json:"headers,omitempty"`
	RemoteIP    string              `json:"remote_ip,omitempty"`
	ContentType string              `json:"content_type,omitempty"`
	Body        string              `json:"body,omitempty"`
	BodyBase64  []byte              `json:"body_base64,omitempty"`
}

type answerView struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func viewRun(r *store.Run, full bool) runView {
	v := runView{ID: r.ID, Partner: r.Partner, Site: r.Site, Endpoint: r.Endpoint, Saga: r.Saga, SagaVersion: r.SagaVersion,
		Mode: r.Mode, Status: string(r.Status), ReceivedAt: r.ReceivedAt, UpdatedAt: r.UpdatedAt, FinishedAt: timePtr(r.FinishedAt),
		WakeAt: timePtr(r.WakeAt), Attempt: r.Attempt, ReplayOf: r.ReplayOf, RetryOf: r.RetryOf, SupersededBy: r.SupersededBy,
		IdempotencyKey: r.IdempotencyKey, Error: r.Error, TraceID: tracing.TraceIDOf(r.TraceParent)}
	if !full {
		return v
	}
	q := r.Request
	v.Request = &requestView{Method: q.Method, Path: q.Path, Query: q.Query, Headers: q.Headers, RemoteIP: q.RemoteIP, ContentType: q.ContentType}
	if utf8.Valid(q.Body) {
		v.Request.Body = string(q.Body)
	} else {
		v.Request.BodyBase64 = q.Body
	}
	if r.Answer != nil {
		v.Answer = &answerView{Status: r.Answer.Status}
		if json.Valid(r.Answer.Body) {
			v.Answer.Body = r.Answer.Body
		}
	}
	if json.Valid(r.Result) {
		v.Result = r.Result
	}
	v.Progress = viewProgress(r)
	return v
}

func (a *API) listRuns(c echo.Context) error {
	if key, ok := senderKey(c.QueryParams()); ok {
		return a.listByKey(c, key)
	}
	f, err := parseRunFilter(c.QueryParams(), a.o.Clock.Now())
	if err != nil {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	runs, next, err := a.o.Store.List(c.Request().Context(), f)
	if errors.Is(err, store.ErrInvalid) {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	if err != nil {
		return err
	}
	out := make([]runView, len(runs))
	for i, r := range runs {
		out[i] = viewRun(r, false)
	}
	return c.JSON(http.StatusOK, map[string]any{"runs": out, "next": next})
}

func (a *API) getRun(c echo.Context) error {
	r, err := a.o.Store.GetRun(c.Request().Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return &apiError{code: http.StatusNotFound, message: "no run " + c.Param("id")}
	}
	if err != nil {
		return err
	}
	v := viewRun(r, true)
	ctx := c.Request().Context()
	// A replay or retry is always newer than its original, so each walk starts at r and the
	// store's scan bound applies to runs after it only.
	if v.Replays, err = a.linkedRuns(ctx, store.Filter{ReplayOf: r.ID, Since: r.ReceivedAt}); err != nil {
		return err
	}
	if v.Retries, err = a.linkedRuns(ctx, store.Filter{RetryOf: r.ID, Since: r.ReceivedAt}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

// maxLinks bounds the replays and retries a run shows; GET /admin/v1/runs?replay_of=ID
// (or retry_of) lists them all.
const maxLinks = 100

// linkedRuns lists the ids of the first runs f finds, oldest first.
func (a *API) linkedRuns(ctx context.Context, f store.Filter) ([]string, error) {
	f.Oldest, f.Limit = true, maxLinks
	runs, _, err := a.o.Store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(runs))
	for i, x := range runs {
		ids[i] = x.ID
	}
	return ids, nil
}

func (a *API) replay(c echo.Context) error {
	id, err := a.o.Control.Replay(c.Request().Context(), c.Param("id"))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return &apiError{code: http.StatusNotFound, message: "no run " + c.Param("id")}
	}
	if err != nil {
		return &apiError{code: http.StatusConflict, message: "cannot replay: " + err.Error()}
	}
	return c.JSON(http.StatusAccepted, map[string]string{"run_id": id, "replay_of": c.Param("id")})
}

// statusList names every run status, for messages that refuse another.
func statusList() string {
	var b strings.Builder
	for i, st := range store.Statuses() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(st))
	}
	return b.String()
}
