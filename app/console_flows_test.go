package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// flowsApp is an app whose runs cover the console's flows: "flaky" fails at its second
// step after two tries until the downstream is fixed, "waits" waits ten minutes for its
// step's next try, "answers" answers at once.
func flowsApp(t *testing.T) (*App, *atomic.Bool) {
	t.Helper()
	var fixed atomic.Bool
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/c" && !fixed.Load() {
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"T-1"}`)
	}))
	t.Cleanup(down.Close)
	a := startWith(t, map[string]string{
		"pushbackd.yaml": "egress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down.URL + `"}
endpoints:
  - {name: answers, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: flaky, saga: flaky, security: {method: bearer, tokens: [{value: t}]}}
  - {name: waits, saga: waits, security: {method: bearer, tokens: [{value: t}]}}
  - {name: bounce, saga: bounce, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/bounce.yaml": `name: bounce
debounce: {key: "k", wait: 300ms}
steps:
  - name: call
    http: {method: POST, url: "${ settings.down }/ok"}
`,
		"sagas/answers.yaml": sagaYAML["answers"],
		"sagas/flaky.yaml": `name: flaky
steps:
  - name: one
    http: {method: POST, url: "${ settings.down }/ok"}
  - name: two
    http: {method: POST, url: "${ settings.down }/c"}
    retry: {attempts: 2, backoff: 10ms}
`,
		"sagas/waits.yaml": `name: waits
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/ok"}
    compensate: {http: {method: DELETE, url: "${ settings.down }/ok"}}
  - name: call
    http: {method: POST, url: "${ settings.down }/c"}
    retry: {attempts: 3, backoff: 10m}
`,
	})
	return a, &fixed
}

// has says whether the page has an element matching sel.
func has(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	return get(t, ctx, "look for "+sel, chromedp.Evaluate[bool](`!!document.querySelector(`+strconv.Quote(sel)+`)`))
}

func TestConsoleRunFlowsInABrowser(t *testing.T) {
	ctx := browser(t)
	a, fixed := flowsApp(t)
	admin := newAdmin(t, a)
	base := "http://" + a.AdminAddr()

	flaky := acceptRun(t, a, "flaky")
	if run := finishedRun(t, admin, flaky); run["status"] != "failed" {
		t.Fatalf("flaky run: %v", run)
	}
	waits := acceptRun(t, a, "waits")
	waitStatus(t, admin, waits, "waiting")
	var answers []string
	for i := range 3 {
		if code, out := post(t, a, "answers", `{"loan":"L-`+strconv.Itoa(i)+`"}`); code != http.StatusCreated {
			t.Fatalf("answers: %d %v", code, out)
		}
	}
	for _, r := range admin.json(http.MethodGet, "/admin/v1/runs?endpoint=answers", "", http.StatusOK)["runs"].([]any) {
		answers = append(answers, r.(map[string]any)["id"].(string))
	}

	run(t, ctx, "log in", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), admin.token+kb.Enter), chromedp.WaitVisible(chromedp.CSS("#queue-depth")))

	t.Run("a failed run shows each try of its step with the try's error, and offers retry but not cancel", func(t *testing.T) {
		run(t, ctx, "open the failed run", chromedp.Navigate(base+"/runs/"+flaky), chromedp.WaitVisible(chromedp.CSS("#steps")))
		tries := get(t, ctx, "tries", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#steps ol.tries li")].map(li => li.textContent)`))
		if len(tries) != 2 {
			t.Fatalf("tries shown %q, want the step's 2", tries)
		}
		for i, try := range tries {
			if !strings.Contains(try, "failed") || !strings.Contains(try, "HTTP 500") {
				t.Errorf("try %d shown as %q, want failed with its HTTP 500", i+1, try)
			}
		}
		for sel, want := range map[string]bool{"#retry": true, "#replay": true, "#cancel": false} {
			if got := has(t, ctx, sel); got != want {
				t.Errorf("button %s shown: %v, want %v", sel, got, want)
			}
		}
	})
	var retryID string
	t.Run("retry opens the new run linked by retry_of, and the old run links to it", func(t *testing.T) {
		fixed.Store(true)
		run(t, ctx, "retry", chromedp.Focus(chromedp.CSS("#retry")), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS("#notice")))
		retryID = textOf(t, ctx, "#run-id")
		if of := textOf(t, ctx, "#retry-of"); retryID == flaky || of != flaky {
			t.Fatalf("after retry at run %s (retry of %q), want a new run retrying %s", retryID, of, flaky)
		}
		if run := finishedRun(t, admin, retryID); run["status"] != "succeeded" {
			t.Errorf("retry run: %v", run)
		}
		run(t, ctx, "follow retry_of", chromedp.Click(chromedp.CSS("#retry-of")), chromedp.WaitVisible(chromedp.CSS("#retries")))
		if loc := location(t, ctx); loc != base+"/runs/"+flaky {
			t.Errorf("retry_of link went to %s", loc)
		}
		run(t, ctx, "follow retries", chromedp.Click(chromedp.CSS(`#retries a[href="/runs/`+retryID+`"]`)), chromedp.WaitVisible(chromedp.CSS("#retry-of")))
		if got := textOf(t, ctx, "#run-id"); got != retryID {
			t.Errorf("retries link opened %s, want %s", got, retryID)
		}
		if has(t, ctx, "#retry") || has(t, ctx, "#cancel") {
			t.Error("a succeeded run offers retry or cancel")
		}
	})
	t.Run("a superseded run links to the run that replaced it", func(t *testing.T) {
		first, second := acceptRun(t, a, "bounce"), acceptRun(t, a, "bounce")
		waitStatus(t, admin, first, "superseded")
		run(t, ctx, "follow superseded_by", chromedp.Navigate(base+"/runs/"+first), chromedp.Click(chromedp.CSS("#superseded-by")),
			chromedp.WaitVisible(chromedp.CSS("#run-id")))
		if got := textOf(t, ctx, "#run-id"); got != second {
			t.Errorf("superseded_by opened %s, want %s", got, second)
		}
	})
	fixed.Store(false)
	t.Run("cancel on a waiting run ends it cancelled and the button goes", func(t *testing.T) {
		run(t, ctx, "open the waiting run", chromedp.Navigate(base+"/runs/"+waits), chromedp.WaitVisible(chromedp.CSS("#run-status")))
		for sel, want := range map[string]bool{"#cancel": true, "#retry": false, "#replay": false} {
			if got := has(t, ctx, sel); got != want {
				t.Errorf("waiting run: button %s shown: %v, want %v", sel, got, want)
			}
		}
		run(t, ctx, "cancel", chromedp.Click(chromedp.CSS("#cancel")), chromedp.WaitVisible(chromedp.CSS("#notice")))
		if n := textOf(t, ctx, "#notice"); !strings.Contains(n, "cancel") {
			t.Errorf("notice %q", n)
		}
		waitStatus(t, admin, waits, "cancelled")
		run(t, ctx, "reload", chromedp.Navigate(base+"/runs/"+waits), chromedp.WaitVisible(chromedp.CSS("#run-status")))
		if st := textOf(t, ctx, "#run-status"); st != "cancelled" || has(t, ctx, "#cancel") {
			t.Errorf("after cancel the page shows %q, cancel button %v; want cancelled and no button", st, has(t, ctx, "#cancel"))
		}
	})
	t.Run("selected runs replay, each to a new run", func(t *testing.T) {
		run(t, ctx, "select", chromedp.Navigate(base+"/runs?endpoint=answers"), chromedp.WaitVisible(chromedp.CSS("#runs-body")),
			chromedp.Click(chromedp.CSS("#sel-"+answers[0])), chromedp.Click(chromedp.CSS("#sel-"+answers[1])),
			chromedp.Click(chromedp.CSS("#replay-selected")), chromedp.WaitVisible(chromedp.CSS("#replayed")))
		links := get(t, ctx, "replays", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#replayed a")].map(a => a.textContent)`))
		if len(links) != 2 {
			t.Fatalf("replayed %q, want 2 new runs", links)
		}
		for _, id := range links {
			if run := admin.json(http.MethodGet, "/admin/v1/runs/"+id, "", http.StatusOK); run["replay_of"] != answers[0] && run["replay_of"] != answers[1] {
				t.Errorf("new run %s replays %v", id, run["replay_of"])
			}
		}
	})
	t.Run("replaying a whole filter shows the count first, then the job's progress to its end, then the new runs", func(t *testing.T) {
		matching := len(admin.json(http.MethodGet, "/admin/v1/runs?endpoint=answers&partner=acme", "", http.StatusOK)["runs"].([]any))
		run(t, ctx, "ask", chromedp.Navigate(base+"/runs?partner=acme&endpoint=answers"), chromedp.Click(chromedp.CSS("#replay-filter")),
			chromedp.WaitVisible(chromedp.CSS("#replay-total")))
		if total := textOf(t, ctx, "#replay-total"); !strings.Contains(total, "matches "+strconv.Itoa(matching)+" runs") {
			t.Fatalf("confirmation %q, want the count %d", total, matching)
		}
		if n := len(admin.json(http.MethodGet, "/admin/v1/jobs", "", http.StatusOK)["jobs"].([]any)); n != 0 {
			t.Fatalf("the count started %d jobs", n)
		}
		run(t, ctx, "confirm", chromedp.Click(chromedp.CSS("#replay-confirm")), chromedp.WaitVisible(chromedp.CSS("#job-end")))
		if st, done := textOf(t, ctx, "#job-state"), textOf(t, ctx, "#job-done"); st != "done" || done != strconv.Itoa(matching) {
			t.Errorf("job ended %s with %s done, want done with %d", st, done, matching)
		}
		run(t, ctx, "see the new runs", chromedp.Click(chromedp.CSS("#job-runs")), chromedp.WaitVisible(chromedp.CSS("#runs-body")))
		rows := get(t, ctx, "rows", chromedp.Evaluate[int](`document.querySelectorAll("#runs-body tr[data-id]").length`))
		if want := matching * 2; rows < want {
			t.Errorf("runs page lists %d runs after the job, want at least %d", rows, want)
		}
	})
	t.Run("a run made after the runs page loaded appears without a reload", func(t *testing.T) {
		run(t, ctx, "open runs", chromedp.Navigate(base+"/runs"), chromedp.WaitVisible(chromedp.CSS("#runs-body")))
		_ = get(t, ctx, "mark the page", chromedp.Evaluate[bool](`window.pushbackdMark = true`))
		_, out := post(t, a, "answers", `{"loan":"L-live"}`)
		id, _ := out["run_id"].(string)
		if id == "" {
			id = admin.json(http.MethodGet, "/admin/v1/runs?limit=1", "", http.StatusOK)["runs"].([]any)[0].(map[string]any)["id"].(string)
		}
		run(t, ctx, "wait for the new row", chromedp.WaitVisible(chromedp.CSS(`#runs-body tr[data-id="`+id+`"]`)))
		if !get(t, ctx, "same page", chromedp.Evaluate[bool](`window.pushbackdMark === true`)) {
			t.Error("the page reloaded instead of refreshing its table")
		}
	})
	t.Run("the endpoints page shows each endpoint's last run and recent failure rate, and its curl command", func(t *testing.T) {
		run(t, ctx, "open endpoints", chromedp.Navigate(base+"/endpoints"), chromedp.WaitVisible(chromedp.CSS("#endpoints")))
		rows := get(t, ctx, "rows", chromedp.Evaluate[map[string][]string](`Object.fromEntries([...document.querySelectorAll("#endpoints tbody tr")].map(tr =>
			[tr.querySelector("code").textContent, [tr.querySelector(".last-received").textContent, tr.querySelector(".failure-rate").textContent, tr.querySelector("pre").textContent]]))`))
		flakyRun := admin.json(http.MethodGet, "/admin/v1/runs/"+retryID, "", http.StatusOK)
		received, _ := time.Parse(time.RFC3339Nano, flakyRun["received_at"].(string))
		for url, want := range map[string][]string{
			"/pushback/acme/flaky": {received.UTC().Format("2006-01-02 15:04:05Z"), "1 of the last 2 runs", "pushbackd curl acme/flaky -file body.json"},
			"/pushback/acme/waits": {"", "0 of the last 1 runs", "pushbackd curl acme/waits -file body.json"},
		} {
			got := rows[url]
			if len(got) != 3 || want[0] != "" && got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
				t.Errorf("%s shown as %q, want %q", url, got, want)
			}
		}
	})
	t.Run("plan and saga tests run on the unsaved draft with mocked step outputs", func(t *testing.T) {
		draft := strings.Replace(sagaYAML["answers"], "status: 201", "status: 299", 1)
		tests := `cases:
  - name: the draft answers 299 with the task
    request: {partner: acme, endpoint: answers, body: {loan: L-9}}
    mocks: {call: [{status: 200, body: {id: T-9}}]}
    expect: {status: succeeded, answer: {status: 299, body: {task: T-9, loan: L-9}}}
  - name: the saved saga's 201
    request: {partner: acme, endpoint: answers, body: {loan: L-9}}
    mocks: {call: [{status: 200, body: {id: T-9}}]}
    expect: {answer: {status: 201}}
`
		run(t, ctx, "plan", chromedp.Navigate(base+"/sagas/answers"), chromedp.WaitVisible(chromedp.CSS("#source")),
			chromedp.SetValue(chromedp.CSS("#source"), draft),
			chromedp.SetValue(chromedp.CSS("#sample"), `{"partner": "acme", "endpoint": "answers", "body": {"loan": "L-9"}, "outputs": {"call": {"status": 200, "body": {"id": "T-7"}}}}`),
			chromedp.Click(chromedp.CSS("#plan")), chromedp.WaitVisible(chromedp.CSS("#try-summary.ok")))
		out := textOf(t, ctx, "#plan-out")
		if !strings.Contains(out, `"status": 299`) || !strings.Contains(out, `"task": "T-7"`) {
			t.Errorf("plan of the draft %s lacks its 299 answer with the mocked task T-7", out)
		}
		run(t, ctx, "test", chromedp.SetValue(chromedp.CSS("#tests"), tests), chromedp.Click(chromedp.CSS("#test")),
			chromedp.Poll[chromedp.Void](`document.getElementById("try-summary").textContent.includes("passed")`))
		if s := textOf(t, ctx, "#try-summary"); s != "1 passed, 1 failed" {
			t.Errorf("saga tests on the draft: %q, want 1 passed, 1 failed", s)
		}
		run(t, ctx, "test without cases", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`document.getElementById("tests").value = ""`)(ctx, t)
			return err
		}), chromedp.Click(chromedp.CSS("#test")),
			chromedp.WaitVisible(chromedp.CSS("#try-summary.error")))
		if s := textOf(t, ctx, "#try-summary"); !strings.Contains(s, "has no test file") {
			t.Errorf("saga tests with no cases and no test file: %q, want the API's reason", s)
		}
		if src := admin.json(http.MethodGet, "/admin/v1/sagas/answers/versions", "", http.StatusOK)["versions"].([]any); len(src) != 1 {
			t.Errorf("trying the draft saved it: %d versions", len(src))
		}
		run(t, ctx, "plan a broken draft", chromedp.SetValue(chromedp.CSS("#source"), strings.Replace(draft, "respond:", "respnd:", 1)),
			chromedp.Click(chromedp.CSS("#plan")), chromedp.WaitVisible(chromedp.CSS("#try-summary.error")))
		if s, out := textOf(t, ctx, "#try-summary"), textOf(t, ctx, "#plan-out"); !strings.Contains(s, "draft saga is invalid") || !strings.Contains(out, "respnd") {
			t.Errorf("plan of a broken draft: %q / %q, want the draft's errors", s, out)
		}
	})
}
