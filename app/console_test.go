package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// consoleUser is a browser-like client of the console: a cookie jar, no redirects
// followed, so each answer can be checked as sent.
type consoleUser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newConsoleUser(t *testing.T, a *App, client *http.Client) *consoleUser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if client != nil {
		c.Transport = client.Transport
	}
	return &consoleUser{t: t, base: "http://" + a.AdminAddr(), c: c}
}

func (u *consoleUser) do(method, path string, form url.Values, header map[string]string) (*http.Response, string) {
	u.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (u *consoleUser) login(token string) *http.Response {
	u.t.Helper()
	resp, _ := u.do(http.MethodPost, "/login", url.Values{"token": {token}}, nil)
	return resp
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// csrf reads the CSRF token a page carries for its scripts.
func (u *consoleUser) csrf() string {
	u.t.Helper()
	_, page := u.do(http.MethodGet, "/runs", nil, nil)
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		u.t.Fatalf("no CSRF token in the runs page:\n%s", page)
	}
	return m[1]
}

func TestConsoleSecurity(t *testing.T) {
	a := startApp(t, "5s")
	admin := newAdmin(t, a)
	_, first := post(t, a, "answers", `{"loan":"L-1"}`)
	runs := admin.json(http.MethodGet, "/admin/v1/runs", "", http.StatusOK)["runs"].([]any)
	if len(runs) != 1 {
		t.Fatalf("want one run after one pushback, have %v (answer %v)", runs, first)
	}
	runID := runs[0].(map[string]any)["id"].(string)

	t.Run("a page without a session sends the browser to the login page", func(t *testing.T) {
		u := newConsoleUser(t, a, nil)
		for _, p := range []string{"/", "/runs", "/runs/" + runID, "/endpoints", "/sagas", "/sagas/answers"} {
			resp, _ := u.do(http.MethodGet, p, nil, nil)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
				t.Errorf("GET %s: %d to %q, want 303 to /login", p, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	})
	t.Run("every answer carries a policy that forbids inline script and other origins", func(t *testing.T) {
		u := newConsoleUser(t, a, nil)
		for _, p := range []string{"/login", "/", "/static/console.js"} {
			resp, _ := u.do(http.MethodGet, p, nil, nil)
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("GET %s: CSP %q lacks %q", p, csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "*") {
				t.Errorf("GET %s: CSP %q allows inline code or any origin", p, csp)
			}
		}
	})
	t.Run("a login with the token sets an HttpOnly SameSite=Strict cookie that is not the token", func(t *testing.T) {
		u := newConsoleUser(t, a, nil)
		resp := u.login(admin.token)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Fatalf("login: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
		}
		cookies := resp.Cookies()
		if len(cookies) != 1 {
			t.Fatalf("login set %d cookies, want 1", len(cookies))
		}
		ck := cookies[0]
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.MaxAge <= 0 || ck.Path != "/" {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, a positive Max-Age, Path=/", ck)
		}
		if strings.Contains(ck.Value, admin.token) {
			t.Error("the session cookie carries the admin token")
		}
		for _, p := range []string{"/", "/runs", "/runs/" + runID, "/endpoints", "/sagas", "/sagas/answers"} {
			resp, page := u.do(http.MethodGet, p, nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s after login: %d, want 200:\n%s", p, resp.StatusCode, page)
			}
			if strings.Contains(page, admin.token) {
				t.Errorf("GET %s shows the admin token", p)
			}
			if strings.Contains(page, "<script>") || strings.Contains(page, " onclick=") || strings.Contains(page, " style=") {
				t.Errorf("GET %s has inline script or style, which the CSP blocks", p)
			}
		}
	})
	t.Run("a state change without the CSRF token is refused and changes nothing", func(t *testing.T) {
		u := newConsoleUser(t, a, nil)
		u.login(admin.token)
		good := u.csrf()
		for _, tc := range []struct {
			name   string
			form   url.Values
			header map[string]string
			path   string
		}{
			{"no token in the form", url.Values{}, nil, "/runs/" + runID + "/replay"},
			{"another token in the form", url.Values{"csrf": {good + "x"}}, nil, "/runs/" + runID + "/replay"},
			{"a script call without the header", nil, nil, "/ui/api/runs/" + runID + "/replay"},
			{"a script call with the form field only", url.Values{"csrf": {good}}, nil, "/ui/api/runs/" + runID + "/replay"},
		} {
			resp, body := u.do(http.MethodPost, tc.path, tc.form, tc.header)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CSRF") {
				t.Errorf("%s: %d %s, want 403 naming the CSRF token", tc.name, resp.StatusCode, body)
			}
		}
		if n := len(admin.json(http.MethodGet, "/admin/v1/runs", "", http.StatusOK)["runs"].([]any)); n != 1 {
			t.Errorf("%d runs after refused replays, want 1", n)
		}
		resp, _ := u.do(http.MethodPost, "/runs/"+runID+"/replay", url.Values{"csrf": {good}}, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/runs/") {
			t.Fatalf("replay with the token: %d to %q, want 303 to the new run", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = u.do(http.MethodGet, "/ui/api/runs/"+runID, nil, map[string]string{"X-CSRF-Token": good})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("a script call with the header: %d, want 200", resp.StatusCode)
		}
		resp, _ = u.do(http.MethodGet, "/ui/api/..%2F..%2Fmetrics", nil, map[string]string{"X-CSRF-Token": good})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a script call climbing out of the API: %d, want 400", resp.StatusCode)
		}
	})
	t.Run("after logout the old cookie is refused", func(t *testing.T) {
		u := newConsoleUser(t, a, nil)
		u.login(admin.token)
		good := u.csrf()
		base, _ := url.Parse(u.base)
		old := u.c.Jar.Cookies(base)
		resp, _ := u.do(http.MethodPost, "/logout", url.Values{"csrf": {good}}, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d, want 303", resp.StatusCode)
		}
		u.c.Jar.SetCookies(base, old) // a thief who kept a copy
		resp, _ = u.do(http.MethodGet, "/runs", nil, nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("GET /runs with the logged-out cookie: %d, want 303 to /login", resp.StatusCode)
		}
		resp, _ = u.do(http.MethodGet, "/ui/api/runs", nil, map[string]string{"X-CSRF-Token": good})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a script call with the logged-out cookie: %d, want 401", resp.StatusCode)
		}
	})
}

func TestConsoleLoginsCountAgainstTheAdminLimiter(t *testing.T) {
	a, admin := startGuarded(t, "admin: {hosts: [admin.internal.example]}\nlimits: {auth_failures: {per_client: 3, window: 1h}}\n")
	guesser := newConsoleUser(t, a, clientFrom(t, "127.0.0.2"))
	for i := range 3 {
		if resp := guesser.login("wrong-" + string(rune('a'+i))); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	t.Run("past the limit even the right token is refused from that address", func(t *testing.T) {
		resp := guesser.login(admin.token)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("login after 3 failures: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if code := send(t, clientFrom(t, "127.0.0.2"), http.MethodGet, "http://"+a.AdminAddr()+"/admin/v1/sagas",
			map[string]string{"Authorization": "Bearer " + admin.token}); code != http.StatusTooManyRequests {
			t.Errorf("the API from the same address: %d, want 429: console guesses are the API's guesses", code)
		}
	})
	t.Run("another address still logs in", func(t *testing.T) {
		if resp := newConsoleUser(t, a, clientFrom(t, "127.0.0.3")).login(admin.token); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("login from another address: %d, want 303", resp.StatusCode)
		}
	})
	t.Run("an empty token costs nothing", func(t *testing.T) {
		u := newConsoleUser(t, a, clientFrom(t, "127.0.0.4"))
		for range 5 {
			if resp := u.login(""); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("empty login: %d, want 400", resp.StatusCode)
			}
		}
		if resp := u.login(admin.token); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("login after empty tries: %d, want 303", resp.StatusCode)
		}
	})
	t.Run("the console answers only to the listener's host names", func(t *testing.T) {
		u := newConsoleUser(t, a, clientFrom(t, "127.0.0.5"))
		for host, want := range map[string]int{"evil.example": http.StatusMisdirectedRequest, "admin.internal.example": http.StatusOK, "localhost": http.StatusOK} {
			resp, _ := u.do(http.MethodGet, "/login", nil, map[string]string{"Host": host})
			if resp.StatusCode != want {
				t.Errorf("GET /login with Host %s: %d, want %d", host, resp.StatusCode, want)
			}
		}
	})
}

func TestValidateSagaMarksErrorsAndChangesNothing(t *testing.T) {
	a := startApp(t, "5s")
	admin := newAdmin(t, a)
	before := admin.json(http.MethodGet, "/admin/v1/sagas/answers/versions", "", http.StatusOK)
	for _, tc := range []struct {
		name, src string
		line      float64
	}{
		{"an unknown key is marked at its line", "name: answers\nsteps:\n  - name: answer\n    respnd: {status: 200}\n", 4},
		{"a tab is marked where YAML stops", "name: answers\nsteps:\n\t- name: x\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := admin.json(http.MethodPost, "/admin/v1/sagas/answers/validate", tc.src, http.StatusOK)
			errs, _ := out["errors"].([]any)
			if out["valid"] != false || len(errs) == 0 {
				t.Fatalf("validate: %v, want errors", out)
			}
			if e := errs[0].(map[string]any); e["file"] != "sagas/answers.yaml" {
				t.Errorf("first error %v, want the draft's own errors first", e)
			}
			marked := false
			for _, e := range errs {
				e := e.(map[string]any)
				marked = marked || e["file"] == "sagas/answers.yaml" && e["line"] == tc.line && e["column"].(float64) >= 1
			}
			if !marked {
				t.Errorf("errors %v, none in sagas/answers.yaml at line %v", errs, tc.line)
			}
		})
	}
	t.Run("a valid draft has no errors and is not saved", func(t *testing.T) {
		out := admin.json(http.MethodPost, "/admin/v1/sagas/answers/validate", "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n", http.StatusOK)
		if out["valid"] != true || len(out["errors"].([]any)) != 0 {
			t.Errorf("validate: %v, want valid", out)
		}
		after := admin.json(http.MethodGet, "/admin/v1/sagas/answers/versions", "", http.StatusOK)
		if len(after["versions"].([]any)) != len(before["versions"].([]any)) {
			t.Errorf("validate recorded a version")
		}
	})
	t.Run("a draft over 1 MiB is refused", func(t *testing.T) {
		code, body, _ := admin.do(http.MethodPost, "/admin/v1/sagas/answers/validate", admin.token, strings.Repeat("#", 1<<20+1))
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d %s, want 413", code, body)
		}
	})
}

func TestConsoleSaysWhatTheServerCannotDo(t *testing.T) {
	a := startApp(t, "5s")
	admin := newAdmin(t, a)
	post(t, a, "answers", `{"loan":"L-1"}`)
	runID := admin.json(http.MethodGet, "/admin/v1/runs", "", http.StatusOK)["runs"].([]any)[0].(map[string]any)["id"].(string)
	u := newConsoleUser(t, a, nil)
	u.login(admin.token)
	csrf := url.Values{"csrf": {u.csrf()}}
	for _, tc := range []struct {
		name, path, want string
		form             url.Values
	}{
		{"an unknown run action is named", "/runs/" + runID + "/delete", "replayed, retried or cancelled", csrf},
		{"replaying a run that does not exist says so", "/runs/nope/replay", "no run nope", csrf},
		{"too many selected runs are refused before any replay", "/runs/replay", "at most 50", url.Values{"csrf": csrf["csrf"], "id": make([]string, 51)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := u.do(http.MethodPost, tc.path, tc.form, nil)
			if resp.StatusCode < 400 || !strings.Contains(body, tc.want) {
				t.Errorf("POST %s: %d, want an error page saying %q:\n%s", tc.path, resp.StatusCode, tc.want, body)
			}
		})
	}
	if n := len(admin.json(http.MethodGet, "/admin/v1/runs", "", http.StatusOK)["runs"].([]any)); n != 1 {
		t.Errorf("%d runs after refused actions, want 1", n)
	}
	finishedRun(t, admin, runID)
	t.Run("a job that does not exist is a 404 page saying so", func(t *testing.T) {
		if resp, body := u.do(http.MethodGet, "/jobs/nope", nil, nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no such job") {
			t.Errorf("GET /jobs/nope: %d\n%s", resp.StatusCode, body)
		}
	})
	// Retry, cancel and bulk replay are always on the API: a refusal is the API's own
	// reason, never a "not available" page.
	for _, tc := range []struct {
		name, path, want string
		code             int
	}{
		{"retrying a run that does not exist says so", "/runs/nope/retry", "no run nope", http.StatusNotFound},
		{"cancelling a run that does not exist says so", "/runs/nope/cancel", "no run nope", http.StatusNotFound},
		{"retrying a run that succeeded says to replay it", "/runs/" + runID + "/retry", "only a failed run can be retried", http.StatusConflict},
		{"cancelling a finished run says why not", "/runs/" + runID + "/cancel", "succeeded", http.StatusConflict},
		{"replaying an empty filter asks for one", "/runs/replay-filter", "filter is empty", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := u.do(http.MethodPost, tc.path, csrf, nil)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) || strings.Contains(body, "unavailable") {
				t.Errorf("POST %s: %d, want %d saying %q:\n%s", tc.path, resp.StatusCode, tc.code, tc.want, body)
			}
		})
	}
}

// TestConsoleCookieIsSecureUnderTLS logs in over HTTPS on a TLS admin listener: the session
// cookie must carry Secure (a browser then never sends it over plain HTTP), and the
// session must work there; the logout's clearing cookie too.
func TestConsoleCookieIsSecureUnderTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := writeCert(t, certFile, keyFile, "console")
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml":     "admin: {tls: {cert_file: cert.pem, key_file: key.pem}}\ndata_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	u := newConsoleUser(t, a, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}})
	u.base = "https://" + a.AdminAddr()
	token, err := os.ReadFile(AdminTokenPath(a.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	cookieOf := func(resp *http.Response) *http.Cookie {
		for _, c := range resp.Cookies() {
			if c.Name == "pushbackd_console" {
				return c
			}
		}
		t.Fatalf("no session cookie in %d %v", resp.StatusCode, resp.Header)
		return nil
	}
	t.Run("the login's session cookie is Secure, HttpOnly and SameSite=Strict", func(t *testing.T) {
		resp := u.login(strings.TrimSpace(string(token)))
		if c := cookieOf(resp); !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || resp.TLS == nil {
			t.Errorf("cookie %+v over TLS %v, want Secure, HttpOnly, SameSite=Strict", c, resp.TLS != nil)
		}
	})
	t.Run("the session works over HTTPS", func(t *testing.T) {
		if resp, body := u.do(http.MethodGet, "/runs", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="runs"`) {
			t.Errorf("GET /runs over HTTPS: %d", resp.StatusCode)
		}
	})
	t.Run("logging out clears the cookie with a Secure one", func(t *testing.T) {
		resp, _ := u.do(http.MethodPost, "/logout", url.Values{"csrf": {u.csrf()}}, nil)
		if c := cookieOf(resp); !c.Secure || c.MaxAge >= 0 {
			t.Errorf("logout cookie %+v, want Secure and expired", c)
		}
	})
}
