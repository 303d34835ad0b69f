package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/store/bolt"
)

// cancelDown is the downstream of the cancel tests: it counts calls by method and path;
// /c fails, /hold answers once released.
type cancelDown struct {
	srv     *httptest.Server
	mu      sync.Mutex
	calls   map[string]int
	holding atomic.Int32
	release chan struct{}
}

func newCancelDown(t *testing.T) *cancelDown {
	d := &cancelDown{calls: map[string]int{}, release: make(chan struct{})}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.calls[r.Method+" "+r.URL.Path]++
		d.mu.Unlock()
		switch r.URL.Path {
		case "/c":
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		case "/hold":
			d.holding.Add(1)
			<-d.release
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x"}`)
	}))
	t.Cleanup(func() {
		select {
		case <-d.release:
		default:
			close(d.release)
		}
		d.srv.Close()
	})
	return d
}

func (d *cancelDown) count(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[key]
}

func cancelFiles(down *cancelDown) map[string]string {
	return map[string]string{
		"pushbackd.yaml": "egress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down.srv.URL + `"}
endpoints:
  - {name: waits, saga: waits, security: {method: bearer, tokens: [{value: t}]}}
  - {name: holds, saga: holds, security: {method: bearer, tokens: [{value: t}]}}
  - {name: later, saga: later, security: {method: bearer, tokens: [{value: t}]}}
`,
		// reserve succeeds; call fails and waits ten minutes for its next try.
		"sagas/waits.yaml": `name: waits
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/reserve"}
    compensate: {http: {method: DELETE, url: "${ settings.down }/reserve"}}
  - name: call
    http: {method: POST, url: "${ settings.down }/c"}
    retry: {attempts: 3, backoff: 10m}
`,
		"sagas/holds.yaml": `name: holds
steps:
  - name: hold
    http: {method: POST, url: "${ settings.down }/hold"}
    compensate: {http: {method: DELETE, url: "${ settings.down }/hold"}}
  - name: after
    http: {method: POST, url: "${ settings.down }/after"}
`,
		"sagas/later.yaml": `name: later
debounce: {key: "${ body.k }", wait: 1h}
steps:
  - name: call
    http: {method: POST, url: "${ settings.down }/later"}
`,
	}
}

// waitStatus polls run id until it has status want.
func waitStatus(t *testing.T, c *adminClient, id, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		run := c.json(http.MethodGet, "/admin/v1/runs/"+id, "", http.StatusOK)
		if run["status"] == want {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not become %s: %v", id, want, run)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancelCompensatesWhatTheRunDidAndEndsItCancelled(t *testing.T) {
	down := newCancelDown(t)
	a := startWith(t, cancelFiles(down))
	c := newAdmin(t, a)

	t.Run("cancel of a run in a retry wait compensates its completed step and ends it cancelled", func(t *testing.T) {
		id := acceptRun(t, a, "waits")
		waitStatus(t, c, id, "waiting")
		ans := c.json("POST", "/admin/v1/runs/"+id+"/cancel", "", http.StatusAccepted)
		if ans["cancel_requested"] != true {
			t.Errorf("answer %v", ans)
		}
		run := waitStatus(t, c, id, "cancelled")
		if n := down.count("DELETE /reserve"); n != 1 {
			t.Errorf("the downstream saw %d compensations of reserve, want 1", n)
		}
		if n := down.count("POST /c"); n != 1 {
			t.Errorf("the failing step was tried %d times, want 1: the cancel must not try it again", n)
		}
		comps, _ := run["result"].(map[string]any)["compensations"].([]any)
		if len(comps) != 1 || comps[0].(map[string]any)["status"] != "succeeded" {
			t.Errorf("compensations %v", comps)
		}
		// The try the step made before its wait stays on record, failed, with its error.
		steps, _ := run["result"].(map[string]any)["steps"].([]any)
		if len(steps) != 2 {
			t.Fatalf("steps %v, want reserve and the tried call", steps)
		}
		call := steps[1].(map[string]any)
		if call["name"] != "call" || call["status"] != "failed" || call["attempts"] != float64(1) ||
			!strings.Contains(fmt.Sprint(call["error"]), "cancelled in its retry wait after 1 try; the last: POST ") {
			t.Errorf("the tried step's record: %v", call)
		}
	})

	t.Run("cancel of a running run blocked in a step stops after that step", func(t *testing.T) {
		id := acceptRun(t, a, "holds")
		for deadline := time.Now().Add(5 * time.Second); down.holding.Load() == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the run never called /hold")
			}
		}
		ans := c.json("POST", "/admin/v1/runs/"+id+"/cancel", "", http.StatusAccepted)
		if ans["status"] != "running" {
			t.Errorf("answer %v", ans)
		}
		close(down.release)
		waitStatus(t, c, id, "cancelled")
		if n := down.count("POST /after"); n != 0 {
			t.Errorf("the step after the cancel was called %d times", n)
		}
		if n := down.count("DELETE /hold"); n != 1 {
			t.Errorf("the blocked step was compensated %d times, want 1", n)
		}
	})

	t.Run("a run that never started ends cancelled at once and is counted", func(t *testing.T) {
		code, body := post(t, a, "later", `{"k":"1"}`)
		if code != http.StatusOK {
			t.Fatalf("%d %v", code, body)
		}
		id := body["run_id"].(string)
		ans := c.json("POST", "/admin/v1/runs/"+id+"/cancel", "", http.StatusOK)
		if ans["status"] != "cancelled" {
			t.Errorf("answer %v", ans)
		}
		if n := down.count("POST /later"); n != 0 {
			t.Errorf("a cancelled run called its step %d times", n)
		}
		if m := scrape(t, c); m[`pushbackd_runs_total{endpoint="later",partner="acme",saga="later",status="cancelled"}`] != 1 {
			t.Errorf("pushbackd_runs_total{saga=later,status=cancelled} = %v, want 1", m[`pushbackd_runs_total{endpoint="later",partner="acme",saga="later",status="cancelled"}`])
		}
		runs := c.json("GET", "/admin/v1/runs?status=cancelled&saga=later", "", http.StatusOK)["runs"].([]any)
		if len(runs) != 1 {
			t.Errorf("runs?status=cancelled: %v", runs)
		}
	})

	t.Run("cancel of a final run is a 409 that names its status", func(t *testing.T) {
		id := acceptRun(t, a, "holds") // /hold is released: it succeeds
		waitStatus(t, c, id, "succeeded")
		msg := c.json("POST", "/admin/v1/runs/"+id+"/cancel", "", http.StatusConflict)["error"].(string)
		if !strings.Contains(msg, "succeeded") || !strings.Contains(msg, "final") {
			t.Errorf("message %q", msg)
		}
		c.json("POST", "/admin/v1/runs/019b7ca9-9070-7183-a505-37589cc57c17/cancel", "", http.StatusNotFound)
	})
}

func TestACancelRequestedBeforeARestartStillEndsCancelled(t *testing.T) {
	down := newCancelDown(t)
	dir := t.TempDir()
	files := cancelFiles(down)
	files["pushbackd.yaml"] += "data_dir: " + filepath.Join(dir, "data") + "\n"
	writeFiles(t, dir, files)
	start := func() *App {
		a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start()
	id := acceptRun(t, a, "waits")
	waitStatus(t, newAdmin(t, a), id, "waiting")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// The cancel is recorded while no process runs the queue; the file is closed again.
	st, err := bolt.Open(filepath.Join(dir, "data", "pushbackd.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.Cancel(ctx, id); err != nil || !r.CancelRequested {
		t.Fatalf("Cancel = %+v, %v", r, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if n := down.count("DELETE /reserve"); n != 0 {
		t.Fatalf("compensated before the restart: %d", n)
	}

	b := start()
	defer func() { _ = b.Stop(ctx) }()
	waitStatus(t, newAdmin(t, b), id, "cancelled")
	if n := down.count("DELETE /reserve"); n != 1 {
		t.Errorf("the downstream saw %d compensations after the restart, want 1", n)
	}
	if n := down.count("POST /c"); n != 1 {
		t.Errorf("the failing step was tried %d times, want 1", n)
	}
}
