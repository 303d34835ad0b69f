package app

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// figuresPartnerYAML secures each endpoint a different way, with secrets distinctive
// enough that finding one on a page can only mean a leak.
const figuresPartnerYAML = `id: acme
settings: {down: "DOWNSTREAM"}
endpoints:
  - {name: answers, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: bearer-secret-7f3a9c}]}}
  - {name: fails, saga: fails, mode: sync, security: {preset: github, secrets: [{value: github-secret-2d8b6f}]}}
  - {name: once, saga: answers, security: {method: api_key, query: api_key, keys: [{value: apikey-secret-4c1d2e}]}}
  - {name: basic, saga: answers, security: {method: basic, username: acme, password: {value: basic-secret-9a8b7c}}}
`

var figuresSecrets = []string{"bearer-secret-7f3a9c", "github-secret-2d8b6f", "apikey-secret-4c1d2e", "basic-secret-9a8b7c"}

// TestConsoleFiguresComeFromTheStore stores runs the running process never saw (as
// another instance on a shared store, or this one before a restart, would have) and checks
// that the overview counts them all, per status, and ranks endpoints by failed runs; and
// that the endpoints page's curl command reaches this pushback listener with each
// method's auth header and no secret.
func TestConsoleFiguresComeFromTheStore(t *testing.T) {
	down := downstream(t)
	dir := t.TempDir()
	files := map[string]string{
		"pushbackd.yaml":     "limits: {sync_timeout: 5s}\ndata_dir: " + filepath.Join(dir, "data") + "\negress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": strings.Replace(figuresPartnerYAML, "DOWNSTREAM", down.URL, 1),
	}
	for name, src := range sagaYAML {
		files["sagas/"+name+".yaml"] = src
	}
	writeFiles(t, dir, files)
	// 2,400 runs: every tenth failed (240), the rest succeeded; more than the newest 200
	// the overview used to count.
	const n = 2400
	seedHistory(t, filepath.Join(dir, "data", "pushbackd.db"), n)
	partners, endpoints := []string{"acme", "globex", "initech", "umbrella"}, []string{"answers", "fails", "once"}
	failedBy := map[string]int{}
	for i := range n {
		if i%10 == 3 {
			failedBy[partners[i%len(partners)]+"//"+endpoints[(i/4)%len(endpoints)]]++
		}
	}
	a := runApp(t, dir, zaptest.NewLogger(t), true)
	admin := newAdmin(t, a)
	u := newConsoleUser(t, a, nil)
	if resp := u.login(admin.token); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	_, overview := u.do(http.MethodGet, "/", nil, nil)

	t.Run("the hour and day charts count every stored run per status", func(t *testing.T) {
		for _, want := range []string{
			`<span class="status succeeded">succeeded</span></th><td><meter min="0" max="2160" value="2160"`,
			`<td class="count">2,160</td>`, `<td class="count">240</td>`,
		} {
			if c := strings.Count(overview, want); c != 2 {
				t.Errorf("overview holds %q %d times, want twice (hour and day):\n%s", want, c, overview)
			}
		}
	})
	t.Run("compensation_failed is counted from the store", func(t *testing.T) {
		if !strings.Contains(overview, `id="compensation-failed">0</p>`) {
			t.Errorf("overview lacks a compensation_failed count of 0:\n%s", overview)
		}
	})
	t.Run("endpoints are ranked by failed runs, not by answers", func(t *testing.T) {
		total := 0
		for name, c := range failedBy {
			total += c
			if want := fmt.Sprintf("<tr><td>%s</td><td>%d</td></tr>", name, c); !strings.Contains(overview, want) {
				t.Errorf("overview lacks %s", want)
			}
		}
		if !strings.Contains(overview, fmt.Sprintf("From the newest %d runs", total)) {
			t.Errorf("overview does not say it ranked %d failed runs", total)
		}
	})

	_, page := u.do(http.MethodGet, "/endpoints", nil, nil)
	page = html.UnescapeString(page)
	base := "http://" + a.Addr()
	cmds := []struct{ name, want string }{
		{"bearer sends a bearer token", "curl -sS -X POST '" + base + "/pushback/acme/answers' -H 'Content-Type: application/json' -H \"Authorization: Bearer $TOKEN\" --data-binary @body.json"},
		{"a signature preset sends its header", "curl -sS -X POST '" + base + "/pushback/acme/fails' -H 'Content-Type: application/json' -H \"X-Hub-Signature-256: $X_HUB_SIGNATURE_256\" --data-binary @body.json"},
		{"a query api key goes in the query", "curl -sS -X POST '" + base + "/pushback/acme/once?api_key='\"$API_KEY\" -H 'Content-Type: application/json' --data-binary @body.json"},
		{"basic sends credentials", "-H \"Authorization: Basic $CREDENTIALS\""},
	}
	for _, c := range cmds {
		t.Run("the curl command: "+c.name, func(t *testing.T) {
			if !strings.Contains(page, c.want) {
				t.Errorf("endpoints page lacks\n%s\nin\n%s", c.want, page)
			}
		})
	}
	t.Run("a signed endpoint says to compute its signature with pushbackd sign", func(t *testing.T) {
		if !strings.Contains(page, "$X_HUB_SIGNATURE_256</code> to what <code>pushbackd sign</code> prints") {
			t.Errorf("endpoints page does not say how to compute the signature:\n%s", page)
		}
	})
	t.Run("the curl command works once its variables are set", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, base+"/pushback/acme/answers", strings.NewReader(`{"loan":"L-1"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer bearer-secret-7f3a9c") // what $TOKEN is set to
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST as the command shows = %d, want 201", resp.StatusCode)
		}
	})
	t.Run("no configured secret appears on any page", func(t *testing.T) {
		for _, p := range []string{"/", "/runs", "/endpoints", "/sagas", "/sagas/answers"} {
			_, body := u.do(http.MethodGet, p, nil, nil)
			for _, s := range figuresSecrets {
				if strings.Contains(body, s) {
					t.Errorf("GET %s shows the secret %s", p, s)
				}
			}
		}
	})
}

// TestLoginSaysWhereTheTokenIs: the token is in the data directory only when pushbackd
// generated it; with admin.token in the config (always on Postgres) it is there.
func TestLoginSaysWhereTheTokenIs(t *testing.T) {
	a := startApp(t, "5s")
	u := newConsoleUser(t, a, nil)
	_, page := u.do(http.MethodGet, "/login", nil, nil)
	_, refused := u.do(http.MethodPost, "/login", url.Values{"token": {""}}, nil)
	for name, body := range map[string]string{"the login page": page, "an empty login": refused} {
		body = html.UnescapeString(body)
		if !strings.Contains(body, "admin.token") || !strings.Contains(body, "pushbackd.yaml") || !strings.Contains(body, "<data_dir>/admin.token") {
			t.Errorf("%s does not name both places the token may be:\n%s", name, body)
		}
	}
}
