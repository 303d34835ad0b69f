package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// countingDown is a downstream that counts calls per path and keeps the bodies; /c fails
// until fixed.
type countingDown struct {
	srv    *httptest.Server
	fixed  atomic.Bool
	mu     sync.Mutex
	calls  map[string]int
	bodies map[string][]string
}

func newCountingDown(t *testing.T) *countingDown {
	d := &countingDown{calls: map[string]int{}, bodies: map[string][]string{}}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		key := r.Method + " " + r.URL.Path
		d.calls[key]++
		d.bodies[key] = append(d.bodies[key], string(b))
		d.mu.Unlock()
		if r.URL.Path == "/c" && !d.fixed.Load() {
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"from-`+strings.TrimPrefix(r.URL.Path, "/")+`"}`)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *countingDown) count() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, v := range d.calls {
		out[k] = v
	}
	return out
}

const threeSteps = `name: three
steps:
  - name: one
    http: {method: POST, url: "${ settings.down }/a"}
  - name: two
    http: {method: POST, url: "${ settings.down }/b", json: {from: "${ steps.one.output.body.id }"}}
  - name: three
    http: {method: POST, url: "${ settings.down }/c", json: {one: "${ steps.one.output.body.id }", two: "${ steps.two.output.body.id }"}}
`

func retryApp(t *testing.T) (*App, *countingDown) {
	t.Helper()
	down := newCountingDown(t)
	a := startWith(t, map[string]string{
		"pushbackd.yaml": "egress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down.srv.URL + `"}
endpoints:
  - {name: three, saga: three, security: {method: bearer, tokens: [{value: t}]}}
  - {name: undone, saga: undone, security: {method: bearer, tokens: [{value: t}]}}
  - {name: bounce, saga: bounce, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/bounce.yaml": `name: bounce
debounce: {key: "k", wait: 300ms}
steps:
  - name: call
    http: {method: POST, url: "${ settings.down }/c"}
`,
		"sagas/three.yaml": threeSteps,
		"sagas/undone.yaml": `name: undone
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/ok"}
    compensate: {http: {method: DELETE, url: "${ settings.down }/ok"}}
  - name: call
    http: {url: "${ settings.down }/c"}
`,
	})
	return a, down
}

func acceptRun(t *testing.T, a *App, endpoint string) string {
	t.Helper()
	code, body := post(t, a, endpoint, `{}`)
	if code != http.StatusOK {
		t.Fatalf("%s: %d %v", endpoint, code, body)
	}
	return body["run_id"].(string)
}

func TestRetryGoesOnFromTheFailedStep(t *testing.T) {
	a, down := retryApp(t)
	c := newAdmin(t, a)

	t.Run("a retry of a run whose step 3 of 3 failed calls only step 3 again and succeeds", func(t *testing.T) {
		id := acceptRun(t, a, "three")
		if run := finishedRun(t, c, id); run["status"] != "failed" {
			t.Fatalf("first run: %v", run)
		}
		before := down.count()
		down.fixed.Store(true)
		defer down.fixed.Store(false)
		ans := c.json("POST", "/admin/v1/runs/"+id+"/retry", "", http.StatusAccepted)
		retry := finishedRun(t, c, ans["run_id"].(string))
		if retry["status"] != "succeeded" || retry["retry_of"] != id {
			t.Fatalf("retry: %v", retry)
		}
		after := down.count()
		for path, want := range map[string]int{"POST /a": 0, "POST /b": 0, "POST /c": 1} {
			if got := after[path] - before[path]; got != want {
				t.Errorf("the retry called %s %d times, want %d", path, got, want)
			}
		}
		// The finished steps' outputs were kept: step 3 renders them.
		down.mu.Lock()
		last := down.bodies["POST /c"][len(down.bodies["POST /c"])-1]
		down.mu.Unlock()
		if last != `{"one":"from-a","two":"from-b"}` {
			t.Errorf("step 3 was sent %s", last)
		}
		steps := retry["result"].(map[string]any)["steps"].([]any)
		if len(steps) != 3 {
			t.Errorf("the retry's record holds %d steps, want the 2 kept and the retried one: %v", len(steps), steps)
		}
		orig := c.json("GET", "/admin/v1/runs/"+id, "", http.StatusOK)
		if rs, _ := orig["retries"].([]any); len(rs) != 1 || rs[0] != retry["id"] {
			t.Errorf("the original shows retries %v, want [%v]", orig["retries"], retry["id"])
		}
		list := c.json("GET", "/admin/v1/runs?retry_of="+id, "", http.StatusOK)["runs"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["id"] != retry["id"] {
			t.Errorf("runs?retry_of=%s: %v", id, list)
		}
	})

	t.Run("a retry after an edit that left the steps as they were runs under the new version", func(t *testing.T) {
		id := acceptRun(t, a, "three")
		finishedRun(t, c, id)
		c.json("PUT", "/admin/v1/sagas/three", "# a comment changes the version, not the steps\n"+threeSteps+"timeout: 1m\n", http.StatusOK)
		down.fixed.Store(true)
		defer down.fixed.Store(false)
		ans := c.json("POST", "/admin/v1/runs/"+id+"/retry", "", http.StatusAccepted)
		if retry := finishedRun(t, c, ans["run_id"].(string)); retry["status"] != "succeeded" {
			t.Fatalf("retry: %v", retry)
		}
	})

	t.Run("a retry after the saga's earlier step changed is refused with a word to replay", func(t *testing.T) {
		id := acceptRun(t, a, "three")
		finishedRun(t, c, id)
		c.json("PUT", "/admin/v1/sagas/three", strings.Replace(threeSteps, "/b", "/b2", 1), http.StatusOK)
		msg := c.json("POST", "/admin/v1/runs/"+id+"/retry", "", http.StatusConflict)["error"].(string)
		if !strings.Contains(msg, "step two") || !strings.HasSuffix(msg, "changed since the run: replay it instead") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("a compensated run cannot be retried: its steps were undone", func(t *testing.T) {
		id := acceptRun(t, a, "undone")
		if run := finishedRun(t, c, id); run["status"] != "compensated" {
			t.Fatalf("run: %v", run)
		}
		msg := c.json("POST", "/admin/v1/runs/"+id+"/retry", "", http.StatusConflict)["error"].(string)
		if !strings.Contains(msg, "compensated") || !strings.Contains(msg, "undone") || !strings.Contains(msg, "replay") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("a run that succeeded cannot be retried, and the answer names its status", func(t *testing.T) {
		down.fixed.Store(true)
		defer down.fixed.Store(false)
		id := acceptRun(t, a, "three")
		finishedRun(t, c, id)
		msg := c.json("POST", "/admin/v1/runs/"+id+"/retry", "", http.StatusConflict)["error"].(string)
		if !strings.Contains(msg, "succeeded") {
			t.Errorf("message %q", msg)
		}
	})

	t.Run("a retry is not held back by the saga's debounce window", func(t *testing.T) {
		id := acceptRun(t, a, "bounce")
		if run := finishedRun(t, c, id); run["status"] != "failed" {
			t.Fatalf("first run: %v", run)
		}
		down.fixed.Store(true)
		defer down.fixed.Store(false)
		ans := c.json("POST", "/admin/v1/runs/"+id+"/retry", "", http.StatusAccepted)
		retry := c.json("GET", "/admin/v1/runs/"+ans["run_id"].(string), "", http.StatusOK)
		if retry["status"] == "waiting" || retry["wake_at"] != nil {
			t.Errorf("the retry waits in a debounce window: %v", retry)
		}
		if retry = finishedRun(t, c, ans["run_id"].(string)); retry["status"] != "succeeded" {
			t.Errorf("retry: %v", retry)
		}
	})

	t.Run("an unknown run is a 404", func(t *testing.T) {
		c.json("POST", "/admin/v1/runs/019b7ca9-9070-7183-a505-37589cc57c17/retry", "", http.StatusNotFound)
		c.json("POST", "/admin/v1/runs/not-a-run/retry", "", http.StatusNotFound)
	})
}
