package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A run waiting out a retry has no result yet; GET /admin/v1/runs/{id} shows how far it got
// from its checkpoint: the steps that finished, and the action it waits to try again with
// the tries it made — in the forward phase and while compensating.
func TestAWaitingRunShowsItsProgress(t *testing.T) {
	down, throttled := progressDownstreams(t)
	a := startWith(t, progressFiles(down, throttled))
	checkWaitingRunsProgress(t, a, newAdmin(t, a))
}

// The same on Postgres, whose store keeps the checkpoint in its own column.
func TestAWaitingRunShowsItsProgressOnPostgres(t *testing.T) {
	cl := needPostgres(t)
	down, throttled := progressDownstreams(t)
	files := progressFiles(down, throttled)
	files["pushbackd.yaml"] += fmt.Sprintf("admin: {token: {value: %s}}\nstore: {driver: postgres, dsn: {value: %q}}\n", pgAdminToken, cl.NewDatabase(t, ""))
	a := startWith(t, files)
	waitFor(t, "/readyz 200", 10*time.Second, func() bool { return getStatus(t, "http://"+a.AdminAddr()+"/readyz") == 200 })
	checkWaitingRunsProgress(t, a, &adminClient{t: t, a: a, token: pgAdminToken})
}

// progressDownstreams are a downstream that answers (down) and one that answers 503 with
// Retry-After: 30, or 10 on /reservation, within the 30 s a cleanup may take (throttled).
func progressDownstreams(t *testing.T) (down, throttled string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait := "30"
		if r.URL.Path == "/reservation" {
			wait = "10"
		}
		w.Header().Set("Retry-After", wait)
		http.Error(w, "slow down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return downstream(t).URL, srv.URL
}

// progressFiles has two sagas: forward waits out a Retry-After at its second step;
// undoing fails its second step and waits out one at the first step's compensation.
func progressFiles(down, throttled string) map[string]string {
	return map[string]string{
		"pushbackd.yaml": "egress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down + `", throttled: "` + throttled + `"}
endpoints:
  - {name: forward, saga: forward, security: {method: bearer, tokens: [{value: t}]}}
  - {name: undoing, saga: undoing, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/forward.yaml": `name: forward
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/ok"}
  - name: notify
    http: {method: POST, url: "${ settings.throttled }/notify"}
    retry: {attempts: 5, backoff: 1s}
`,
		"sagas/undoing.yaml": `name: undoing
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/ok"}
    compensate: {http: {method: DELETE, url: "${ settings.throttled }/reservation"}}
    retry: {attempts: 3, backoff: 1s}
  - name: call
    http: {url: "${ settings.down }/broken"}
`,
	}
}

func checkWaitingRunsProgress(t *testing.T, a *App, c *adminClient) {
	ids := map[string]string{}
	for _, ep := range []string{"forward", "undoing"} {
		code, body := post(t, a, ep, `{}`)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", ep, code, body)
		}
		ids[ep] = body["run_id"].(string)
	}
	progress := func(t *testing.T, id string) (map[string]any, map[string]any) {
		t.Helper()
		run := waitStatus(t, c, id, "waiting")
		if run["result"] != nil {
			t.Errorf("a waiting run has a result: %v", run["result"])
		}
		p, _ := run["progress"].(map[string]any)
		if p == nil {
			t.Fatalf("no progress: %v", run)
		}
		cur, _ := p["current"].(map[string]any)
		if cur == nil {
			t.Fatalf("no current action: %v", p)
		}
		return p, cur
	}
	checkCurrent := func(t *testing.T, cur map[string]any, step string, wait time.Duration) {
		t.Helper()
		if cur["step"] != step || cur["action"] != "http" || cur["attempts"] != 1.0 {
			t.Errorf("current %v; want step %s, http, 1 attempt", cur, step)
		}
		until, err := time.Parse(time.RFC3339Nano, cur["wait_until"].(string))
		if left := time.Until(until); err != nil || left < wait-8*time.Second || left > wait+time.Second {
			t.Errorf("wait_until %v (%v from now); want the Retry-After's %v", cur["wait_until"], left, wait)
		}
		tries, _ := cur["tries"].([]any)
		if len(tries) != 1 || tries[0].(map[string]any)["http_status"] != 503.0 || tries[0].(map[string]any)["status"] != "failed" {
			t.Errorf("tries %v; want the one 503", tries)
		}
	}

	t.Run("in the forward phase: the finished steps and the step it waits to retry", func(t *testing.T) {
		p, cur := progress(t, ids["forward"])
		steps, _ := p["steps"].([]any)
		if p["phase"] != "forward" || len(steps) != 1 || steps[0].(map[string]any)["name"] != "reserve" || steps[0].(map[string]any)["status"] != "succeeded" {
			t.Errorf("progress %v; want phase forward and reserve succeeded", p)
		}
		checkCurrent(t, cur, "notify", 30*time.Second)
	})
	t.Run("while compensating: the failure and the compensation it waits to retry", func(t *testing.T) {
		p, cur := progress(t, ids["undoing"])
		if p["phase"] != "compensating" || p["failed_step"] != "call" || !strings.Contains(p["error"].(string), "500") {
			t.Errorf("progress %v; want phase compensating after call failed with 500", p)
		}
		checkCurrent(t, cur, "reserve", 10*time.Second)
	})
	t.Run("both match run.schema.json", func(t *testing.T) {
		comp := jsonschema.NewCompiler()
		comp.AssertFormat()
		runS, err := comp.Compile(runSchema)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			code, body, _ := c.do("GET", "/admin/v1/runs/"+id, c.token, "")
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
			if code != 200 || err != nil {
				t.Fatalf("GET %s: %d %v", id, code, err)
			}
			if err := runS.Validate(inst); err != nil {
				t.Errorf("GET %s does not match the schema: %v\n%s", id, err, body)
			}
		}
	})
	t.Run("the console's run page shows it", func(t *testing.T) {
		u := newConsoleUser(t, a, nil)
		if resp := u.login(c.token); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d", resp.StatusCode)
		}
		for ep, want := range map[string][]string{
			"forward": {"In progress", "running the steps", `id="steps"`, "reserve", "notify <small>http</small>", "attempts so far: 1", "HTTP 503"},
			"undoing": {"In progress", "undoing the steps that succeeded, since step call failed", "reserve <small>http, its compensation</small>", "HTTP 503"},
		} {
			_, page := u.do(http.MethodGet, "/runs/"+ids[ep], nil, nil)
			for _, w := range want {
				if !strings.Contains(page, w) {
					t.Errorf("%s: the run page lacks %q:\n%s", ep, w, page)
				}
			}
		}
	})
	t.Run("the list leaves it out", func(t *testing.T) {
		for _, r := range c.json("GET", "/admin/v1/runs", "", 200)["runs"].([]any) {
			if r.(map[string]any)["progress"] != nil {
				t.Errorf("a listed run has progress: %v", r)
			}
		}
	})
}
