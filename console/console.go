// Package console is the web console on the admin listener: HTML pages for runs, endpoints
// and sagas, rendered on the server from the admin API's own answers. The console calls the
// API in-process with the admin token, so it shows nothing the API would not and every rule
// the API has (limits, redaction, validation) holds here too; the browser holds only a
// session cookie, never the token.
package console

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/security"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options are the console's collaborators.
type Options struct {
	// API is the admin API the console calls in-process.
	API   http.Handler
	Token security.Secret
	// SessionTTL is how long a login lasts; zero is 12 hours.
	SessionTTL time.Duration
	// Now is the clock sessions expire by; nil is time.Now.
	Now    func() time.Time
	Logger *zap.Logger
}

// maxSessions bounds the session table: a holder of the token could otherwise log in
// without end and grow it. The oldest session goes first.
const maxSessions = 256

const cookieName = "pushbackd_console"

// csp allows scripts, styles, images, fetches and form posts only from this listener: no
// inline script or style, no other origin, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Console is the console's http.Handler.
type Console struct {
	o     Options
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	id      string
	csrf    string
	created time.Time
	expires time.Time
}

// New builds the console.
func New(o Options) (*Console, error) {
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	c := &Console{o: o, sessions: map[string]*session{}, pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.authed(c.logout))
	m.HandleFunc("GET /{$}", c.authed(c.overview))
	m.HandleFunc("GET /runs", c.authed(c.runs))
	m.HandleFunc("POST /runs/replay", c.authed(c.replaySelected))
	m.HandleFunc("POST /runs/replay-filter", c.authed(c.replayFilter))
	m.HandleFunc("GET /jobs/{id}", c.authed(c.job))
	m.HandleFunc("GET /runs/{id}", c.authed(c.run))
	m.HandleFunc("POST /runs/{id}/{action}", c.authed(c.runAction))
	m.HandleFunc("GET /endpoints", c.authed(c.endpoints))
	m.HandleFunc("GET /sagas", c.authed(c.sagas))
	m.HandleFunc("GET /sagas/{name}", c.authed(c.saga))
	m.HandleFunc("POST /sagas/{name}", c.authed(c.saveSaga))
	m.HandleFunc("POST /sagas/{name}/restore/{n}", c.authed(c.restoreSaga))
	m.HandleFunc("GET /sagas/{name}/diff", c.authed(c.diffSaga))
	// The editor's scripts reach the API through here: the session cookie and the CSRF
	// header stand in for the token the browser never sees.
	m.HandleFunc("/ui/api/{path...}", c.authed(c.proxy))
	c.mux = m
	return c, nil
}

// ServeHTTP sets the headers every answer carries, then routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *Console) newSession() *session {
	now := c.o.Now()
	s := &session{id: randomToken(), csrf: randomToken(), created: now, expires: now.Add(c.o.SessionTTL)}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, old := range c.sessions {
		if !now.Before(old.expires) {
			delete(c.sessions, id)
		}
	}
	for len(c.sessions) >= maxSessions {
		var oldest *session
		for _, old := range c.sessions {
			if oldest == nil || old.created.Before(oldest.created) {
				oldest = old
			}
		}
		delete(c.sessions, oldest.id)
	}
	c.sessions[s.id] = s
	return s
}

// sessionOf finds the request's live session, or nil.
func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil || len(ck.Value) > 64 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if !c.o.Now().Before(s.expires) {
		delete(c.sessions, s.id)
		return nil
	}
	return s
}

func (c *Console) dropSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, s.id)
}

type sessionKey struct{}

// authed lets through a request with a live session; a state change must also carry the
// session's CSRF token, in the form (pages) or the X-CSRF-Token header (scripts).
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		api := strings.HasPrefix(r.URL.Path, "/ui/api/")
		if s == nil {
			if api || r.Method != http.MethodGet {
				writeJSONError(w, http.StatusUnauthorized, "log in to the console first")
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead || api {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" && !api {
				r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
				got = r.PostFormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
				writeJSONError(w, http.StatusForbidden, "missing or wrong CSRF token; reload the page and try again")
				return
			}
		}
		h(w, r, s)
	}
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// maxFormBytes bounds a form post: a saga draft (the API's 1 MiB) and its fields.
const maxFormBytes = 1<<20 + 64<<10

func (c *Console) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, nil, "login", map[string]any{})
}

// login checks the token by asking the API with it, so a guess here is charged to the
// client's address by the same limiter, and blocked by it, exactly as a guess at the API.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	fail := func(code int, msg string) {
		c.renderCode(w, r, nil, code, "login", map[string]any{"Error": msg})
	}
	if token == "" {
		fail(http.StatusBadRequest, "enter the admin token: admin.token in pushbackd.yaml, or <data_dir>/admin.token when pushbackd generated it")
		return
	}
	res := c.callAs(r, "Bearer "+token, http.MethodGet, "/admin/v1/endpoints", nil)
	switch res.code {
	case http.StatusOK:
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", res.header.Get("Retry-After"))
		fail(res.code, "too many failed logins from your address; retry in "+res.header.Get("Retry-After")+" s")
		return
	case http.StatusUnauthorized:
		fail(res.code, "that is not the admin token")
		return
	default:
		fail(http.StatusBadGateway, "the admin API answered "+res.errorText())
		return
	}
	s := c.newSession()
	http.SetCookie(w, c.cookie(r, s.id, int(c.o.SessionTTL.Seconds())))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.dropSession(s)
	http.SetCookie(w, c.cookie(r, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// apiResult is one in-process answer of the admin API.
type apiResult struct {
	code   int
	header http.Header
	body   []byte
}

// errorText is the API's own error message, for showing to the admin.
func (a apiResult) errorText() string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error != "" {
		return http.StatusText(a.code) + ": " + e.Error
	}
	return http.StatusText(a.code)
}

func (a apiResult) decode(v any) error { return json.Unmarshal(a.body, v) }

// recorder collects an in-process answer.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// forwarded are the request headers the API's client-address rule may read; nothing else
// of the browser's request (its cookie above all) reaches the API.
var forwarded = []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded"}

func (c *Console) call(r *http.Request, method, path string, body []byte) apiResult {
	return c.callAs(r, "Bearer "+string(c.o.Token.Reveal()), method, path, body)
}

func (c *Console) callAs(r *http.Request, auth, method, path string, body []byte) apiResult {
	req, err := http.NewRequestWithContext(r.Context(), method, path, bytes.NewReader(body))
	if err != nil {
		return apiResult{code: http.StatusBadRequest, body: []byte(`{"error":"bad request path"}`)}
	}
	req.Host, req.RemoteAddr, req.TLS = r.Host, r.RemoteAddr, r.TLS
	for _, k := range forwarded {
		if v := r.Header.Values(k); v != nil {
			req.Header[k] = v
		}
	}
	req.Header.Set("Authorization", auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	c.o.API.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return apiResult{code: rec.code, header: rec.header, body: rec.body.Bytes()}
}

// proxy forwards a script's call to the same path under /admin/v1.
func (c *Console) proxy(w http.ResponseWriter, r *http.Request, _ *session) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "a request is limited to 1 MiB")
		return
	}
	rest := r.PathValue("path")
	if strings.Contains(rest, "..") {
		// Only the API's own routes: an encoded ../ must not climb to /metrics or back into
		// the console.
		writeJSONError(w, http.StatusBadRequest, "a path under /ui/api/ may not contain ..")
		return
	}
	path := "/admin/v1/" + rest
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	res := c.call(r, r.Method, path, body)
	if ct := res.header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(res.code)
	_, _ = w.Write(res.body)
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, page string, data map[string]any) {
	c.renderCode(w, r, s, http.StatusOK, page, data)
}

func (c *Console) renderCode(w http.ResponseWriter, r *http.Request, s *session, code int, page string, data map[string]any) {
	data["Page"] = page
	if s != nil {
		data["CSRF"] = s.csrf
	}
	var b bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&b, "layout.html", data); err != nil {
		c.o.Logger.Error("console template", zap.String("page", page), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// message shows a page with one sentence, for outcomes that have no page of their own.
func (c *Console) message(w http.ResponseWriter, r *http.Request, s *session, code int, title, msg string) {
	c.renderCode(w, r, s, code, "message", map[string]any{"Title": title, "Message": msg})
}
