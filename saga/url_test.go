package saga

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// requestLines is a downstream that records the request target of every request exactly
// as it arrived on the wire, before any router decodes or cleans it.
type requestLines struct {
	mu    sync.Mutex
	lines []string
	srv   *httptest.Server
}

func newRequestLines(t *testing.T) *requestLines {
	t.Helper()
	rl := &requestLines{}
	rl.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rl.mu.Lock()
		rl.lines = append(rl.lines, r.Method+" "+r.RequestURI)
		rl.mu.Unlock()
	}))
	t.Cleanup(rl.srv.Close)
	return rl
}

func (rl *requestLines) take() []string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	out := rl.lines
	rl.lines = nil
	return out
}

// runURL runs a one-step saga calling url with body and settings.base = base.
func runURL(t *testing.T, rawURL, base string, body map[string]any) *Result {
	t.Helper()
	s := mustParse(t, "u", "name: u\nsteps:\n  - name: call\n    http: {url: '"+rawURL+"'}\n")
	e, _, _ := testEngine(t)
	inv := invocation(s, body)
	inv.Settings = map[string]any{"base": base}
	return e.Run(context.Background(), inv)
}

func TestURLTemplatesEscapeWhatTheyInsert(t *testing.T) {
	down := newRequestLines(t)
	cases := []struct {
		name string
		url  string
		base string // settings.base; "" means the test server
		body map[string]any
		want string // the request line the downstream received
	}{
		{"a path value with ../ stays one segment and cannot climb to another API",
			"${ settings.base }/loans/${ body.id }", "", map[string]any{"id": "../../admin/v1/x"},
			"GET /loans/..%2F..%2Fadmin%2Fv1%2Fx"},
		{"a path value with ? stays in the path and adds no query parameter",
			"${ settings.base }/loans/${ body.id }", "", map[string]any{"id": "L-1?role=admin"},
			"GET /loans/L-1%3Frole%3Dadmin"},
		{"a path value that is only .. is encoded so it does not climb",
			"${ settings.base }/loans/${ body.id }/notes", "", map[string]any{"id": ".."},
			"GET /loans/%2E%2E/notes"},
		{"a path value that is only . is encoded so it does not vanish",
			"${ settings.base }/loans/${ body.id }/notes", "", map[string]any{"id": "."},
			"GET /loans/%2E/notes"},
		{"# and % in a path value are encoded, not taken as a fragment or an escape",
			"${ settings.base }/loans/${ body.id }", "", map[string]any{"id": "a#b%2F c"},
			"GET /loans/a%23b%252F%20c"},
		{"a settings base with a path keeps it and the value follows as one segment",
			"${ settings.base }/loans/${ body.id }", "/api/v2", map[string]any{"id": "x/y"},
			"GET /api/v2/loans/x%2Fy"},
		{"a query value cannot add parameters or end the query",
			"${ settings.base }/loans?id=${ body.id }&x=1", "", map[string]any{"id": "1&role=admin#frag"},
			"GET /loans?id=1%26role%3Dadmin%23frag&x=1"},
		{"a query key is escaped like a value",
			"${ settings.base }/loans?${ body.k }=1", "", map[string]any{"k": "a=b&c"},
			"GET /loans?a%3Db%26c=1"},
		{"a literal origin written out up to its first / is kept and the path value escaped",
			"DOWN/loans/${ body.id }", "", map[string]any{"id": "L 1"},
			"GET /loans/L%201"},
		{"urlpath escapes each segment and keeps the slashes the author asked for",
			"${ settings.base }/files/${ urlpath(body.p) }", "", map[string]any{"p": "a b/c?d/e%f"},
			"GET /files/a%20b/c%3Fd/e%25f"},
		{"urlquery is inserted as it returns, not escaped twice",
			"${ settings.base }/search?q=${ urlquery(body.q) }", "", map[string]any{"q": "a b&c"},
			"GET /search?q=a+b%26c"},
		{"a number and nil render as text",
			"${ settings.base }/n/${ body.n }/${ body.none }", "", map[string]any{"n": 42},
			"GET /n/42/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := down.srv.URL + tc.base
			u := strings.Replace(tc.url, "DOWN", down.srv.URL, 1)
			res := runURL(t, u, base, tc.body)
			if res.Status != StatusSucceeded {
				t.Fatalf("%s: %s", res.Status, res.Error)
			}
			if got := down.take(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("downstream received %q, want %q", got, tc.want)
			}
		})
	}
}

func TestASenderCannotChooseTheHost(t *testing.T) {
	trusted := newRequestLines(t)
	other := newRequestLines(t) // stands in for pushbackd's own 127.0.0.1:8081/metrics
	otherHost := strings.TrimPrefix(other.srv.URL, "http://")
	body := map[string]any{"path": "@" + otherHost + "/metrics"}

	t.Run("a value right after a base without a path fails the step and reaches nobody", func(t *testing.T) {
		res := runURL(t, "${ settings.base }${ body.path }", trusted.srv.URL, body)
		if res.Status != StatusFailed || !strings.Contains(res.Error, "host") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
		if got := append(trusted.take(), other.take()...); len(got) != 0 {
			t.Errorf("requests were sent: %q", got)
		}
	})
	t.Run("a value after a base with a path is one segment on the base's host", func(t *testing.T) {
		res := runURL(t, "${ settings.base }${ body.path }", trusted.srv.URL+"/api/", body)
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		want := "GET /api/%40" + strings.Replace(otherHost, ":", "%3A", 1) + "%2Fmetrics"
		if got := trusted.take(); len(got) != 1 || got[0] != want {
			t.Errorf("trusted downstream received %q, want %q", got, want)
		}
		if got := other.take(); len(got) != 0 {
			t.Errorf("the sender's host received %q", got)
		}
	})
	t.Run("a missing base setting is named, not taken for a host", func(t *testing.T) {
		res := runURL(t, "${ settings.nope }/x/${ body.path }", trusted.srv.URL, body)
		if res.Status != StatusFailed || !strings.Contains(res.Error, "${ settings.nope } gave no base URL") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
	})
	t.Run("urlpath cannot climb either", func(t *testing.T) {
		res := runURL(t, "${ settings.base }/files/${ urlpath(body.p) }", trusted.srv.URL, map[string]any{"p": "a/../../admin"})
		if res.Status != StatusFailed || !strings.Contains(res.Error, "urlpath") {
			t.Errorf("%s: %s", res.Status, res.Error)
		}
		if got := trusted.take(); len(got) != 0 {
			t.Errorf("requests were sent: %q", got)
		}
	})
	t.Run("urlquery cannot make a .. segment in the path", func(t *testing.T) {
		res := runURL(t, "${ settings.base }/files/${ urlquery(body.p) }/x", trusted.srv.URL, map[string]any{"p": ".."})
		if res.Status != StatusSucceeded {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		if got := trusted.take(); len(got) != 1 || got[0] != "GET /files/%2E%2E/x" {
			t.Errorf("downstream received %q", got)
		}
	})
}

func TestURLTemplatesThatLetSenderDataChooseTheHostDoNotLoad(t *testing.T) {
	refused := []struct {
		name, url, msg string
	}{
		{"a whole url from the body", "${ body.url }",
			"the scheme and host come from ${ body.url }, which reads body: sender data may not choose where pushbackd connects; put the base URL in settings"},
		{"a whole url from a request header", "${ request.headers.target }", "which reads request"},
		{"a base url from vars", "${ vars.base }/x", "which reads vars"},
		{"a base url from an earlier step's answer", "${ steps.first.output.body.next }", "which reads steps"},
		{"settings indexed by the body", "${ settings[body.which] }/x", "which reads body"},
		{"settings joined with the body in one expression", "${ settings.base + body.path }", "which reads body"},
		{"a base url from a secret", "${ secret('base') }/x", "which reads secret()"},
		{"a host from the body", "http://${ body.host }/x", "would be part of the scheme, user info, host or port"},
		{"a port from the body", "http://api.example.com:${ body.port }/x", "would be part of the scheme, user info, host or port"},
		{"text right after a written host", "https://api.example.com${ body.path }", "would be part of the scheme, user info, host or port"},
		{"user info from a template", "https://u:${ secret('pw') }@api.example.com/x", "would be part of the scheme, user info, host or port"},
		{"a second ${ } of settings in the host", "https://${ settings.host }/x", "would be part of the scheme, user info, host or port"},
		{"a scheme from the body", "${ body.scheme }://api.example.com/x", "which reads body"},
		{"a url without http:// or https:// before the first ${ }", "api.example.com/${ body.id }", "must start with http:// or https://"},
		{"a value in the fragment", "https://api.example.com/x#${ body.f }", "fragment"},
		{"urlpath in the query", "https://api.example.com/x?q=${ urlpath(body.q) }", "use urlquery()"},
	}
	for _, tc := range refused {
		t.Run(tc.name+" is refused with its position", func(t *testing.T) {
			src := "name: u\nsteps:\n  - name: first\n    set: {a: 1}\n  - name: call\n    http: {url: \"" + tc.url + "\"}\n"
			_, errs := Parse("sagas/u.yaml", []byte(src))
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			e := errs[0]
			if e.Line != 6 || e.Column != 17 || !strings.Contains(e.Message, tc.msg) ||
				!strings.Contains(e.Message, `step "call": http.url:`) || !strings.Contains(e.Message, "template column") {
				t.Errorf("got %v\nwant sagas/u.yaml:6:17: step \"call\": http.url: ...%s... (template column N)", e, tc.msg)
			}
		})
	}
	t.Run("compensate and on_failure urls follow the same rule", func(t *testing.T) {
		src := `name: u
steps:
  - name: call
    http: {url: "https://api.example.com/x"}
    compensate: {http: {url: "${ steps.call.output.body.undo_url }"}}
on_failure: {http: {url: "http://${ body.alert_host }/alert"}}
`
		_, errs := Parse("sagas/u.yaml", []byte(src))
		if len(errs) != 2 || !strings.Contains(errs[0].Message, "compensate: http.url:") || !strings.Contains(errs[1].Message, "on_failure: http.url:") {
			t.Errorf("errs %v", errs)
		}
	})

	loads := []string{
		"${ settings.base }",
		"${ settings.base }/x/${ body.id }?q=${ body.q }&r=${ steps.first.output }",
		"${ settings.base ?? 'https://fallback.example' }/x/${ body.id }",
		"${ settings.base }${ body.path }",
		"https://api.example.com/${ body.id }/${ request.headers.x }",
		"https://api.example.com:8443/?a=${ body.a }",
		"https://api.example.com?a=${ body.a }",
		"http://api.example.com/${ urlpath(body.p) }?q=${ urlquery(body.q) }",
		"https://api.example.com/x#top",
	}
	for _, u := range loads {
		t.Run(u+" loads", func(t *testing.T) {
			mustParse(t, "u", "name: u\nsteps:\n  - name: first\n    set: {a: 1}\n  - name: call\n    http: {url: \""+u+"\"}\n")
		})
	}
}

// FuzzURLTemplateKeepsTheOrigin: whatever a sender puts in body.s, the rendered URL has the
// scheme, host and port of settings.base, the base's path segments, then "x", then exactly
// one segment that decodes to s; and in the query, one parameter whose value is s.
func FuzzURLTemplateKeepsTheOrigin(f *testing.F) {
	for _, s := range []string{"", ".", "..", "../../admin", "@127.0.0.1:8081/metrics", "a?b=c#d", "%2F", "é/ü", "\x00\xff", " ", "a;b,c", "//evil.example"} {
		f.Add(s)
	}
	s := mustParse(f, "u", "name: u\nsteps:\n  - name: call\n    http: {url: \"${ settings.base }/x/${ body.s }?q=${ body.s }&k=1\"}\n")
	bases := []string{"http://127.0.0.1:9000", "https://api.example.com/v1", "http://[::1]:8080/a/b"}
	f.Fuzz(func(t *testing.T, v string) {
		for _, base := range bases {
			inv := invocation(s, nil)
			inv.Request.Body = map[string]any{"s": v} // not through JSON, which would mend bad UTF-8
			inv.Settings = map[string]any{"base": base}
			in, err := s.Steps[0].Action.http.render(newEvaluator(newEnv(inv, newRunState(nil)), defaultExprLimits()))
			if err != nil {
				t.Fatalf("base %s, s %q: %v", base, v, err)
			}
			u, err := url.Parse(in.url)
			if err != nil {
				t.Fatalf("base %s, s %q: rendered %q does not parse: %v", base, v, in.url, err)
			}
			b, _ := url.Parse(base)
			if u.Scheme != b.Scheme || u.Host != b.Host || u.User != nil || u.Fragment != "" {
				t.Fatalf("base %s, s %q: rendered %q has scheme %q host %q", base, v, in.url, u.Scheme, u.Host)
			}
			want := append(strings.Split(b.EscapedPath(), "/"), "x", v)
			got := strings.Split(u.EscapedPath(), "/")
			if len(got) != len(want) {
				t.Fatalf("base %s, s %q: path %q has %d segments, want %d", base, v, u.EscapedPath(), len(got), len(want))
			}
			for i := range got {
				seg, err := url.PathUnescape(got[i])
				if err != nil || seg != want[i] || seg == "." && got[i] == "." || seg == ".." && got[i] == ".." {
					t.Fatalf("base %s, s %q: segment %d is %q (%q), want %q", base, v, i, got[i], seg, want[i])
				}
			}
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil || len(q) != 2 || len(q["q"]) != 1 || q.Get("q") != v || q.Get("k") != "1" {
				t.Fatalf("base %s, s %q: query %q parses as %v (%v)", base, v, u.RawQuery, q, err)
			}
		}
	})
}

// FuzzURLTemplateHostIgnoresTheBody: for any url template that loads, and any text a
// sender puts in the body, the rendered URL has the same scheme, user info and host as
// with a harmless body: sender data can change only the path and the query.
func FuzzURLTemplateHostIgnoresTheBody(f *testing.F) {
	for _, seed := range []struct{ tmpl, v string }{
		{"${ settings.base }/loans/${ body.id }", "../../admin"},
		{"${ settings.base }${ body.path }", "@127.0.0.1:8081/metrics"},
		{"${ settings.base }?q=${ body.q }#${ body.f }", "x#y"},
		{"https://api.example.com/${ body.id }?a=${ body.a }", "a/b?c=d#e"},
		{"http://api.example.com:80/${ urlpath(body.path) }", "x/../y"},
		{"${ settings.base }/${ urlquery(body.q) }", ".."},
		{"https://${ body.host }/x", "evil.example"},
		{"${ body.url }", "http://evil.example/"},
		{"${ settings.base }/a/${ body.id }${ body.path }/c", "@x:1"},
	} {
		f.Add(seed.tmpl, seed.v)
	}
	f.Fuzz(func(t *testing.T, tmpl, v string) {
		src := "name: u\nsteps:\n  - name: call\n    http:\n      url: " + strconv.Quote(tmpl) + "\n"
		s, errs := Parse("sagas/u.yaml", []byte(src))
		if len(errs) > 0 {
			return
		}
		render := func(value string) (*url.URL, bool) {
			inv := invocation(s, nil)
			inv.Request.Body = map[string]any{"id": value, "path": value, "q": value, "f": value, "a": value, "host": value, "url": value}
			inv.Settings = map[string]any{"base": "http://127.0.0.1:9000/base"}
			in, err := s.Steps[0].Action.http.render(newEvaluator(newEnv(inv, newRunState(nil)), defaultExprLimits()))
			if err != nil {
				return nil, false
			}
			u, err := url.Parse(in.url)
			return u, err == nil
		}
		benign, ok := render("v")
		if !ok {
			return
		}
		got, ok := render(v)
		if !ok {
			return
		}
		if got.Scheme != benign.Scheme || got.Host != benign.Host || got.User.String() != benign.User.String() {
			t.Fatalf("template %q with %q: %s, with a harmless body: %s", tmpl, v, got.Redacted(), benign.Redacted())
		}
	})
}

func TestASenderCannotChooseTheHostHeader(t *testing.T) {
	t.Run("a Host header templated from the body does not load", func(t *testing.T) {
		_, errs := Parse("sagas/h.yaml", []byte("name: h\nsteps:\n  - name: call\n    http:\n      url: http://api.example.com/x\n      headers: {Host: \"${ body.vhost }\"}\n"))
		if len(errs) != 1 || !strings.Contains(errs[0].Message, "the Host header comes from ${ body.vhost }, which reads body") || errs[0].Line != 6 {
			t.Fatalf("errors %v", errs)
		}
	})
	t.Run("a Host header from settings or a constant is sent", func(t *testing.T) {
		var hosts []string
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hosts = append(hosts, r.Host)
			mu.Unlock()
		}))
		t.Cleanup(srv.Close)
		for _, h := range []string{`"${ settings.vhost }"`, `crm.internal`} {
			s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n    http:\n      url: \"${ settings.base }/x\"\n      headers: {Host: "+h+"}\n")
			e, _, _ := testEngine(t)
			inv := invocation(s, map[string]any{"vhost": "evil.example"})
			inv.Settings = map[string]any{"base": srv.URL, "vhost": "crm.internal"}
			if res := e.Run(context.Background(), inv); res.Status != StatusSucceeded {
				t.Fatalf("%s: %s %s", h, res.Status, res.Error)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(hosts) != 2 || hosts[0] != "crm.internal" || hosts[1] != "crm.internal" {
			t.Errorf("hosts received %v", hosts)
		}
	})
	t.Run("headers built whole by one expression may not set Host", func(t *testing.T) {
		rl := newRequestLines(t)
		s := mustParse(t, "h", "name: h\nsteps:\n  - name: call\n    http:\n      url: \"${ settings.base }/x\"\n      headers: \"${ body.headers }\"\n")
		e, _, _ := testEngine(t)
		inv := invocation(s, map[string]any{"headers": map[string]any{"Host": "evil.example"}})
		inv.Settings = map[string]any{"base": rl.srv.URL}
		res := e.Run(context.Background(), inv)
		if res.Status != StatusFailed || !strings.Contains(res.Error, "Host may not come from an expression") {
			t.Fatalf("%s %s", res.Status, res.Error)
		}
		if got := rl.take(); len(got) != 0 {
			t.Errorf("requests sent: %v", got)
		}
	})
}
