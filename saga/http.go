package saga

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushbackd/pushbackd/internal/jsondec"
	"github.com/pushbackd/pushbackd/internal/jsonenc"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// defaultHTTPTimeout bounds a request whose step sets no timeout, so that one slow
// downstream cannot hold a run until the saga's own timeout.
const defaultHTTPTimeout = 30 * time.Second

var httpMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// httpAction calls another system.
type httpAction struct {
	method string
	url    *value
	// urlT is url compiled with the url rules (url.go) when it holds templates.
	urlT     *urlTemplate
	headers  *value
	query    *value
	bodyKind string // "json", "body", "form" or ""
	body     *value
	timeout  time.Duration
	expect   []int // empty: any 2xx
	// noRedirects: follow_redirects: false, a 3xx answer is the step's output.
	noRedirects bool
	// credentials says which headers carry credentials, for redaction and redirects.
	credentials credentialHeaders
	// hostHeaderKnown: the headers are a mapping whose keys are known at load, so a Host
	// among them was checked not to come from sender data. Headers built whole by one
	// expression may not set Host.
	hostHeaderKnown bool
}

// credentialHeaders names the headers of one http action whose values are credentials: the
// standard credential headers, and any whose template calls secret() (whatever encoding
// wraps the secret: base64 for Basic, a signature, a concatenation). Decided at load from
// the templates, not by searching values, so no encoding of a secret can slip past.
type credentialHeaders struct {
	names map[string]bool // lower-case header names
	// all: the headers come from one expression that calls secret(), so every one of them
	// is treated as a credential.
	all bool
}

// standardCredentialHeaders carry credentials whatever produced their value.
var standardCredentialHeaders = []string{"authorization", "proxy-authorization", "cookie"}

// isCredential reports whether header name (any case) carries a credential.
func (c credentialHeaders) isCredential(name string) bool {
	if c.all {
		return true
	}
	name = strings.ToLower(name)
	return c.names[name] || slices.Contains(standardCredentialHeaders, name)
}

func newCredentialHeaders(headers *value) credentialHeaders {
	var c credentialHeaders
	if headers == nil {
		return c
	}
	if headers.kind != vMap {
		c.all = headers.callsSecret
		return c
	}
	for i, k := range headers.keys {
		if headers.vals[i].callsSecret {
			if c.names == nil {
				c.names = map[string]bool{}
			}
			c.names[strings.ToLower(k)] = true
		}
	}
	return c
}

type rawHTTP struct {
	Method  posString     `yaml:"method"`
	URL     rawNode       `yaml:"url,required"`
	Headers rawNode       `yaml:"headers"`
	Query   rawNode       `yaml:"query"`
	JSON    rawNode       `yaml:"json"`
	Body    rawNode       `yaml:"body"`
	Form    rawNode       `yaml:"form"`
	Timeout time.Duration `yaml:"timeout"`
	Expect  []posInt      `yaml:"expect"`
	// FollowRedirects defaults to true.
	FollowRedirects *bool `yaml:"follow_redirects"`
	Pos             yamlconf.Pos
}

func (c *compiler) httpAction(ra *rawAction, sc exprScope, label string) *httpAction {
	var raw rawHTTP
	c.d.Decode(ra.node, &raw)
	a := &httpAction{timeout: raw.Timeout, noRedirects: raw.FollowRedirects != nil && !*raw.FollowRedirects}
	if raw.URL.n != nil {
		a.url = c.value(raw.URL.n, sc, label+".url")
		if a.url.shape != "string" && a.url.shape != "template" {
			c.d.Errorf(raw.URL.n, "%s: url: expected text, got a %s", label, a.url.shape)
		}
		if a.url.kind == vTemplate {
			src, _ := c.d.Scalar(c.d.Resolve(raw.URL.n))
			a.urlT = c.urlTemplate(src, a.url.t, yamlconf.PosOf(raw.URL.n), label+".url")
		}
	}
	if raw.Headers.n != nil {
		a.headers = c.mappingValue(raw.Headers.n, sc, label+".headers")
		a.credentials = newCredentialHeaders(a.headers)
		a.hostHeaderKnown = c.checkHostHeader(a.headers, raw.Headers.n, label+".headers")
	}
	if raw.Query.n != nil {
		a.query = c.mappingValue(raw.Query.n, sc, label+".query")
	}
	for _, b := range []struct {
		kind string
		n    rawNode
	}{{"json", raw.JSON}, {"body", raw.Body}, {"form", raw.Form}} {
		if b.n.n == nil {
			continue
		}
		if a.bodyKind != "" {
			c.d.Errorf(b.n.n, "%s: %s and %s both set: a request has one body, use json, body or form", label, a.bodyKind, b.kind)
			continue
		}
		a.bodyKind = b.kind
		if b.kind == "form" {
			a.body = c.mappingValue(b.n.n, sc, label+".form")
		} else {
			a.body = c.value(b.n.n, sc, label+"."+b.kind)
		}
	}
	a.method = http.MethodGet
	if a.bodyKind != "" {
		a.method = http.MethodPost
	}
	if raw.Method.set {
		m := strings.ToUpper(raw.Method.s)
		if !httpMethods[m] {
			c.errorf(raw.Method.pos, "%s: unknown method %q", label, raw.Method.s)
		}
		a.method = m
	}
	for _, e := range raw.Expect {
		if e.set && (e.v < 100 || e.v > 599) {
			c.errorf(e.pos, "%s: expect: %d is not an HTTP status (100-599)", label, e.v)
		}
		a.expect = append(a.expect, e.v)
	}
	return a
}

type httpInput struct {
	method   string
	url      string
	headers  map[string]string
	query    map[string]any
	bodyKind string
	body     any
	timeout  time.Duration
	// noRedirects: answer with a 3xx rather than follow it.
	noRedirects bool
	// credentials: which of headers carry credentials (the action's, decided at load).
	credentials credentialHeaders
}

// record is the input as history, plans and logs show it. Credential headers read
// security.Redacted whatever their value: decided by name and by template at load, so no
// encoding or combination of secrets can slip through, as it could past a search for the
// secrets' texts.
func (in *httpInput) record() any {
	m := map[string]any{"method": in.method, "url": in.url}
	if len(in.headers) > 0 {
		h := make(map[string]string, len(in.headers))
		for k, v := range in.headers {
			if in.credentials.isCredential(k) {
				v = security.Redacted
			}
			h[k] = v
		}
		m["headers"] = h
	}
	if len(in.query) > 0 {
		m["query"] = in.query
	}
	if in.bodyKind != "" {
		m[in.bodyKind] = in.body
	}
	if in.timeout > 0 {
		m["timeout"] = in.timeout.String()
	}
	return m
}

func (a *httpAction) render(ev *evaluator) (*httpInput, error) {
	in := &httpInput{method: a.method, bodyKind: a.bodyKind, timeout: a.timeout, noRedirects: a.noRedirects, credentials: a.credentials}
	var err error
	if a.urlT != nil {
		in.url, err = a.urlT.render(ev)
	} else {
		var u any
		u, err = a.url.render(ev)
		in.url = stringify(u)
	}
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if a.headers != nil {
		if in.headers, err = renderStringMap(a.headers, ev); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
		if !a.hostHeaderKnown {
			for k := range in.headers {
				if strings.EqualFold(k, "host") {
					return nil, errors.New("headers: Host may not come from an expression that builds the whole headers mapping, since sender data could choose it; write Host as its own key")
				}
			}
		}
		if rs := runStateOf(ev); rs != nil {
			for k, v := range in.headers {
				if a.credentials.isCredential(k) {
					rs.conceal(v)
				}
			}
		}
	}
	if a.query != nil {
		q, err := a.query.render(ev)
		if err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		if q != nil {
			qm, ok := q.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("query: expected a mapping, got %T", q)
			}
			in.query = qm
		}
	}
	if a.body != nil {
		if in.body, err = a.body.render(ev); err != nil {
			return nil, fmt.Errorf("%s: %w", a.bodyKind, err)
		}
	}
	return in, nil
}

// HTTPOutput is the output of an http step, `steps.<name>.output` in expressions.
func httpOutput(status int, h http.Header, body any) map[string]any {
	headers := make(map[string]string, len(h))
	for k, vs := range h {
		headers[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	return map[string]any{"status": status, "headers": headers, "body": body}
}

// maxRedirects is how many redirects one http step follows, as Go's client does by default.
const maxRedirects = 10

// execHTTP sends the request and reads at most MaxResponseBytes of the answer. A longer
// answer fails the step rather than being cut: a truncated JSON document would parse as
// nothing or, worse, as something else.
//
// lists are the run's egress lists (the engine's when the run carries none). They are
// checked before the request, on every address dialled and on every redirect.
func (e *Engine) execHTTP(ctx context.Context, in *httpInput, expect []int, lists []EgressPolicy) (any, error) {
	u, err := url.Parse(in.url)
	if err != nil {
		return nil, permanent(fmt.Errorf("url: %w", err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, permanent(fmt.Errorf("url %q: need an absolute http or https URL", safeURL(u)))
	}
	if len(in.query) > 0 {
		q := u.Query()
		for k, v := range in.query {
			switch x := v.(type) {
			case nil:
			case []any:
				for _, item := range x {
					q.Add(k, stringify(item))
				}
			default:
				q.Set(k, stringify(x))
			}
		}
		u.RawQuery = q.Encode()
	}
	if len(lists) == 0 {
		lists = []EgressPolicy{e.opts.Egress}
	}
	t := e.transports.get(lists)
	if err := t.guard.checkURL(u); err != nil {
		return nil, permanent(renameRefusal(err, lists))
	}
	where := in.method + " " + safeURL(u)

	var body io.Reader
	contentType := ""
	switch in.bodyKind {
	case "json":
		b, err := jsonenc.AppendValue(nil, in.body)
		if err != nil {
			return nil, permanent(fmt.Errorf("%s: json body: %w", where, err))
		}
		body, contentType = bytes.NewReader(b), "application/json"
	case "form":
		form := url.Values{}
		if m, ok := in.body.(map[string]any); ok {
			for k, v := range m {
				switch x := v.(type) {
				case nil:
				case []any:
					for _, item := range x {
						form.Add(k, stringify(item))
					}
				default:
					form.Set(k, stringify(x))
				}
			}
		} else if in.body != nil {
			return nil, permanent(fmt.Errorf("%s: form: expected a mapping, got %T", where, in.body))
		}
		body, contentType = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
	case "body":
		body = strings.NewReader(stringify(in.body))
	}

	timeout := in.timeout
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	errTimeout := timedOut("", timeout)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()

	ctx, span := startClientSpan(ctx, in.method, u)
	defer span.end()
	req, err := http.NewRequestWithContext(ctx, in.method, u.String(), body)
	if err != nil {
		return nil, permanent(fmt.Errorf("%s: %w", where, err))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range in.headers {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	span.inject(ctx, req.Header)
	var rt http.RoundTripper = t.rt
	if e.opts.Transport != nil {
		rt = e.opts.Transport
	}
	client := &http.Client{Transport: rt, CheckRedirect: func(next *http.Request, via []*http.Request) error {
		return checkRedirect(t.guard, in, next, via)
	}}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the full URL, query and all
		}
		var ee *egressError
		if cause := context.Cause(ctx); cause == errTimeout {
			err = errTimeout
		} else if cause != nil && ctx.Err() != nil {
			err = cause
		} else if errors.As(err, &ee) {
			// The refusal says what and why; "dial tcp 10.0.0.1:80:" before it adds nothing.
			err = ee.naming(lists)
		}
		if errors.Is(err, ErrEgressRefused) {
			err = permanent(err)
		}
		span.failed(err)
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer resp.Body.Close()
	span.answered(resp.StatusCode)

	limit := e.opts.MaxResponseBytes
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if context.Cause(ctx) == errTimeout {
			err = errTimeout
		}
		return nil, fmt.Errorf("%s: reading the answer: %w", where, err)
	}
	if int64(len(raw)) > limit {
		return nil, permanent(fmt.Errorf("%s: answer larger than %d bytes (engine max_response_bytes)", where, limit))
	}
	out := httpOutput(resp.StatusCode, resp.Header, decodeBody(resp.Header.Get("Content-Type"), raw))

	if !statusExpected(resp.StatusCode, expect) {
		var err error = &statusError{msg: fmt.Sprintf("%s: unexpected status %d", where, resp.StatusCode), quote: snippet(raw)}
		if resp.StatusCode >= 300 && resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 425 && resp.StatusCode != 429 {
			// The same request will be refused (or redirected: follow_redirects is false)
			// the same way; retrying only delays the failure.
			err = permanent(err)
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			if h := resp.Header.Get("Retry-After"); h != "" {
				if d, ok := parseRetryAfter(h, e.clock.Now()); ok {
					err = &retryAfterError{err: err, after: d, header: h}
				}
			}
		}
		return out, err
	}
	return out, nil
}

// checkRedirect vets one redirect hop: the run's egress lists apply to it as to the first
// request (its dialled address is checked again when it connects), and once the request has
// left its first host:port, credential headers stay behind. Go's client re-sends every
// header it was given except a few standard ones, and those it keeps for subdomains; a
// secret() in a custom header would otherwise follow a redirect anywhere.
func checkRedirect(g *egressGuard, in *httpInput, next *http.Request, via []*http.Request) error {
	if in.noRedirects {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return permanent(fmt.Errorf("stopped after %d redirects", maxRedirects))
	}
	if err := g.checkURL(next.URL); err != nil {
		return err
	}
	// The Referer would tell the next host our URL, query and all.
	next.Header.Del("Referer")
	origin := hostPort(via[0].URL)
	left := hostPort(next.URL) != origin
	for _, r := range via[1:] {
		left = left || hostPort(r.URL) != origin
	}
	if left {
		for _, name := range standardCredentialHeaders {
			next.Header.Del(name)
		}
		for name := range in.headers {
			if in.credentials.isCredential(name) {
				next.Header.Del(name)
			}
		}
	}
	return nil
}

// hostPort is u's host and port, the port made explicit.
func hostPort(u *url.URL) string {
	return net.JoinHostPort(strings.ToLower(u.Hostname()), urlPort(u))
}

// renameRefusal names the refusing list as the run knows it.
func renameRefusal(err error, lists []EgressPolicy) error {
	var ee *egressError
	if errors.As(err, &ee) {
		return ee.naming(lists)
	}
	return err
}

// maxRetryAfter caps a Retry-After wait when the step sets no max_backoff (a step with a
// retry block always has one, 1m by default). A downstream that asks for a day must not
// park a run, and its checkpoint, for a day.
const maxRetryAfter = time.Hour

// retryAfterError is a 429 or 503 answer whose Retry-After header said how long to wait
// before trying again. The engine waits at least that long (within the step's caps) before
// the next try.
type retryAfterError struct {
	err    error
	after  time.Duration // from now; 0 for a date in the past
	header string        // as sent, for the record
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// parseRetryAfter reads a Retry-After value: delta-seconds or an HTTP-date (RFC 9110
// §10.2.3). A date is measured against now, the engine's clock, so tests see exact waits.
// Anything else is ignored (ok false) and the step's own backoff applies: a garbled header
// is no reason to wait longer, or to fail.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(maxRetryAfter/time.Second) {
			// Only digits, so the error is overflow: a valid, absurdly long wait. Callers cap
			// it anyway; clamping here keeps the multiplication below from overflowing.
			return maxRetryAfter + time.Second, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0 // the date has passed: no extra wait beyond the backoff
	}
	return d, true
}

func statusExpected(code int, expect []int) bool {
	if len(expect) == 0 {
		return code >= 200 && code < 300
	}
	for _, e := range expect {
		if e == code {
			return true
		}
	}
	return false
}

// decodeBody parses a JSON answer and keeps anything else as text.
func decodeBody(contentType string, raw []byte) any {
	isJSON := false
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		isJSON = err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
	} else {
		t := bytes.TrimSpace(raw)
		isJSON = len(t) > 0 && (t[0] == '{' || t[0] == '[')
	}
	if isJSON {
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil
		}
		// jsondec gives what json.Unmarshal into any gives, with about half the objects.
		if v, err := jsondec.Decode(raw); err == nil {
			return v
		}
	}
	return string(raw)
}

// statusError is a downstream's unexpected status, with the start of its answer quoted:
// the run record keeps the quote, the info-level log leaves it out (no bodies at info
// level).
type statusError struct{ msg, quote string }

func (e *statusError) Error() string { return e.msg + e.quote }

// withoutAnswer is err's message for the info-level log when err quotes a downstream's
// answer: the message without the quote. ok is false when err quotes none.
func withoutAnswer(err error) (msg string, ok bool) {
	var se *statusError
	if errors.As(err, &se) && se.quote != "" {
		return se.msg + " (its answer is in the run record)", true
	}
	return "", false
}

// snippet is the start of an error answer, for the step's error message.
func snippet(raw []byte) string {
	const max = 200
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return ""
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return ": " + s
}

// safeURL drops the query and user info: they often carry credentials that no secret()
// produced, so redaction would not know them.
func safeURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.ForceQuery = false
	c.Fragment = ""
	return c.String()
}
