package app

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// focused says whether the element with the keyboard focus matches sel.
func focused(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	return get(t, ctx, "focus", chromedp.Evaluate[bool](`!!document.activeElement && document.activeElement.matches(`+strconv.Quote(sel)+`)`))
}

// tabTo presses Tab until sel has the focus, as someone without a mouse would, and fails
// the test when it never does: every element the walkthrough uses must be in the tab
// order. In the saga editor Tab indents, so it presses Escape first there, as the page
// says to.
func tabTo(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	for range 400 {
		if focused(t, ctx, sel) {
			return
		}
		if focused(t, ctx, "#source") {
			run(t, ctx, "leave the editor", chromedp.KeyEvent(kb.Escape))
		}
		run(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
	}
	t.Fatalf("%s cannot be reached with Tab", sel)
}

// press tabs to sel and presses key on it.
func press(t *testing.T, ctx context.Context, sel, key string) {
	t.Helper()
	tabTo(t, ctx, sel)
	run(t, ctx, "press on "+sel, chromedp.KeyEvent(key))
}

// waitUntil waits until the page's JavaScript expression is true, also across the
// navigation a key press may have started.
func waitUntil(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		step, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(step, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %s never held", what, expr)
}

// TestConsoleKeyboardWalkthrough does every console action with Tab, Enter, Space, arrow
// keys and typed text only: no clicks and no values set by script.
func TestConsoleKeyboardWalkthrough(t *testing.T) {
	ctx := browser(t)
	a, _ := flowsApp(t)
	admin := newAdmin(t, a)
	base := "http://" + a.AdminAddr()
	flaky := acceptRun(t, a, "flaky")
	if r := finishedRun(t, admin, flaky); r["status"] != "failed" {
		t.Fatalf("flaky run: %v", r)
	}
	waits := acceptRun(t, a, "waits")
	waitStatus(t, admin, waits, "waiting")
	for i := range 2 {
		if code, out := post(t, a, "answers", `{"loan":"L-`+strconv.Itoa(i)+`"}`); code != http.StatusCreated {
			t.Fatalf("answers: %d %v", code, out)
		}
	}
	count := func(q string) int {
		return len(admin.json(http.MethodGet, "/admin/v1/runs?"+q, "", http.StatusOK)["runs"].([]any))
	}

	run(t, ctx, "open the console", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")))
	tabTo(t, ctx, "#token")
	run(t, ctx, "log in", chromedp.KeyEvent(admin.token+kb.Enter), chromedp.WaitVisible(chromedp.CSS("#queue-depth")))

	t.Run("runs are filtered by typing into the filter fields and pressing Enter on Filter", func(t *testing.T) {
		press(t, ctx, `nav a[href="/runs"]`, kb.Enter)
		run(t, ctx, "runs page", chromedp.WaitVisible(chromedp.CSS("#filter")))
		tabTo(t, ctx, `#filter input[name=endpoint]`)
		run(t, ctx, "type an endpoint", chromedp.KeyEvent("answers"))
		tabTo(t, ctx, `#filter select[name=status]`)
		run(t, ctx, "choose a status", chromedp.KeyEvent("succ"))
		press(t, ctx, `#filter button[type=submit]`, kb.Enter)
		waitUntil(t, ctx, "the filtered page", `location.search.includes("endpoint=answers") && location.search.includes("status=succeeded")`)
		rows := get(t, ctx, "rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#runs-body tr")].map(r => r.textContent)`))
		if len(rows) != 2 {
			t.Fatalf("filtered rows %q, want the 2 answers runs", rows)
		}
		for _, r := range rows {
			if !strings.Contains(r, "acme/answers") || !strings.Contains(r, "succeeded") {
				t.Errorf("row %q does not match the filter", r)
			}
		}
	})
	t.Run("a run is selected with Space and replayed with Replay selected", func(t *testing.T) {
		before := count("endpoint=answers")
		press(t, ctx, `#runs-body input[name=id]`, " ")
		if !get(t, ctx, "checked", chromedp.Evaluate[bool](`document.activeElement.checked`)) {
			t.Fatal("Space did not select the run")
		}
		press(t, ctx, "#replay-selected", kb.Enter)
		run(t, ctx, "replayed", chromedp.WaitVisible(chromedp.CSS("#replayed a")))
		if after := count("endpoint=answers"); after != before+1 {
			t.Errorf("%d answers runs after replaying one of %d", after, before)
		}
	})
	t.Run("a failed run is opened from the runs list and retried", func(t *testing.T) {
		press(t, ctx, `nav a[href="/runs"]`, kb.Enter)
		run(t, ctx, "runs page", chromedp.WaitVisible(chromedp.CSS("#filter")))
		tabTo(t, ctx, `#filter input[name=endpoint]`)
		run(t, ctx, "type an endpoint", chromedp.KeyEvent("flaky"+kb.Enter))
		waitUntil(t, ctx, "the filtered page", `location.search.includes("endpoint=flaky")`)
		press(t, ctx, `a[href="/runs/`+flaky+`"]`, kb.Enter)
		run(t, ctx, "the run", chromedp.WaitVisible(chromedp.CSS("#steps")))
		press(t, ctx, "#retry", kb.Enter)
		run(t, ctx, "retried", chromedp.WaitVisible(chromedp.CSS("#notice")))
		if of := textOf(t, ctx, "#retry-of"); of != flaky {
			t.Errorf("after retry the page shows a run retrying %q, want %s", of, flaky)
		}
	})
	t.Run("a waiting run is cancelled with Space on Cancel", func(t *testing.T) {
		press(t, ctx, `nav a[href="/runs"]`, kb.Enter)
		run(t, ctx, "runs page", chromedp.WaitVisible(chromedp.CSS("#filter")))
		tabTo(t, ctx, `#filter input[name=endpoint]`)
		run(t, ctx, "type an endpoint", chromedp.KeyEvent("waits"+kb.Enter))
		waitUntil(t, ctx, "the filtered page", `location.search.includes("endpoint=waits")`)
		press(t, ctx, `a[href="/runs/`+waits+`"]`, kb.Enter)
		run(t, ctx, "the run", chromedp.WaitVisible(chromedp.CSS("#run-status")))
		press(t, ctx, "#cancel", " ")
		run(t, ctx, "cancelled", chromedp.WaitVisible(chromedp.CSS("#notice")))
		waitStatus(t, admin, waits, "cancelled")
	})

	versions := func() int {
		return len(admin.json(http.MethodGet, "/admin/v1/sagas/answers/versions", "", http.StatusOK)["versions"].([]any))
	}
	before := versions()
	t.Run("the editor is reached from the sagas list, edited by typing and saved", func(t *testing.T) {
		press(t, ctx, `nav a[href="/sagas"]`, kb.Enter)
		press(t, ctx, `main a[href="/sagas/answers"]`, kb.Enter)
		run(t, ctx, "the editor", chromedp.WaitVisible(chromedp.CSS("#source")))
		tabTo(t, ctx, "#source")
		run(t, ctx, "type a comment", chromedp.KeyEvent("# typed from the keyboard"+kb.Enter))
		waitUntil(t, ctx, "the draft checked", `!!document.querySelector("#problems .ok")`)
		press(t, ctx, "#save", kb.Enter)
		run(t, ctx, "saved", chromedp.WaitVisible(chromedp.CSS("#notice")))
		if n := versions(); n != before+1 {
			t.Fatalf("%d versions after saving, want %d", n, before+1)
		}
		if _, src, _ := admin.do(http.MethodGet, "/admin/v1/sagas/answers", admin.token, ""); !strings.Contains(src, "# typed from the keyboard\n") {
			t.Errorf("saved saga lacks the typed line:\n%s", src)
		}
	})
	t.Run("plan and saga tests run from their buttons", func(t *testing.T) {
		press(t, ctx, "#plan", kb.Enter)
		waitUntil(t, ctx, "the plan", `document.getElementById("try-summary").className !== ""`)
		if out := textOf(t, ctx, "#try-summary"); out == "" {
			t.Error("Plan showed nothing")
		}
		run(t, ctx, "clear the summary", chromedp.Evaluate[chromedp.Void](`document.getElementById("try-summary").className = ""`))
		press(t, ctx, "#test", " ")
		waitUntil(t, ctx, "the tests", `document.getElementById("try-summary").className !== ""`)
	})
	t.Run("two versions are diffed by choosing them with the arrow keys", func(t *testing.T) {
		tabTo(t, ctx, "#diff-a")
		run(t, ctx, "from the first version", chromedp.KeyEvent(kb.Home))
		tabTo(t, ctx, "#diff-b")
		run(t, ctx, "to the last version", chromedp.KeyEvent(kb.End))
		press(t, ctx, "#diff", kb.Enter)
		run(t, ctx, "the diff", chromedp.WaitVisible(chromedp.CSS("#diff-out")))
		if d := textOf(t, ctx, "#diff-out"); !strings.Contains(d, "+ # typed from the keyboard") {
			t.Errorf("diff lacks the typed line:\n%s", d)
		}
	})
	t.Run("an old version is restored with Enter on its Restore button", func(t *testing.T) {
		press(t, ctx, `nav a[href="/sagas"]`, kb.Enter)
		press(t, ctx, `main a[href="/sagas/answers"]`, kb.Enter)
		run(t, ctx, "the editor", chromedp.WaitVisible(chromedp.CSS("#source")))
		press(t, ctx, "#restore-1", kb.Enter)
		run(t, ctx, "restored", chromedp.WaitVisible(chromedp.CSS("#notice")))
		if n := versions(); n != before+2 {
			t.Errorf("%d versions after restoring, want %d", n, before+2)
		}
	})
	t.Run("log out is reached with Tab", func(t *testing.T) {
		press(t, ctx, "#logout", kb.Enter)
		run(t, ctx, "logged out", chromedp.WaitVisible(chromedp.CSS("#token")))
	})
}
