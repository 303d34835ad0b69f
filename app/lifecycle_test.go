package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

// postRun posts body to acme's endpoint and returns the answer's code and run id.
func postRun(t *testing.T, a *App, endpoint, body string) (int, string) {
	t.Helper()
	code, ans := post(t, a, endpoint, body)
	id, _ := ans["run_id"].(string)
	return code, id
}

func waitRun(t *testing.T, a *App, id string, want store.Status) *store.Run {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		run, err := a.store.GetRun(context.Background(), id)
		if err == nil && run.Status == want {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: %+v (%v), want %s", id, run, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A sync saga whose retry wait ends after sync_timeout does not keep its sender until the
// timeout: the run suspends, the sender gets 504 with the run id at once, and the run
// finishes when the wait is over.
func TestASyncSagaThatMustWaitPastSyncTimeoutAnswers504AtOnce(t *testing.T) {
	var calls atomic.Int32
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "4")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer down.Close()
	a := startWith(t, map[string]string{
		"pushbackd.yaml":     "limits: {sync_timeout: 3s}\negress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": "id: acme\nsettings: {down: \"" + down.URL + "\"}\nendpoints: [{name: e, saga: waits, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/waits.yaml":   "name: waits\nsteps:\n  - {name: call, http: {url: \"${ settings.down }\"}, retry: {attempts: 2, backoff: 1s}}\n",
	})
	began := time.Now()
	code, id := postRun(t, a, "e", "{}")
	if took := time.Since(began); code != http.StatusGatewayTimeout || id == "" || took > 2*time.Second {
		t.Fatalf("answer %d for run %q after %v; want 504 with the run id well before sync_timeout (3s)", code, id, took)
	}
	if run := waitRun(t, a, id, store.StatusWaiting); run.Mode != "sync" {
		t.Errorf("waiting run mode %q", run.Mode)
	}
	run := waitRun(t, a, id, store.StatusSucceeded)
	if calls.Load() != 2 || run.FinishedAt.Sub(began) < 4*time.Second {
		t.Errorf("%d calls, finished %v after the request; want the second try after the 4s Retry-After", calls.Load(), run.FinishedAt.Sub(began))
	}
}

// Stop waits for executing runs for as long as its context allows, then interrupts them and
// closes the store only once they have returned. The interrupted run is not failed: the next
// start resumes it.
func TestStopInterruptsWhatOutlivesItsGraceAndTheNextStartResumesIt(t *testing.T) {
	var held, cancelled, answered atomic.Int32
	var holding atomic.Bool
	holding.Store(true)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if holding.Load() {
			held.Add(1)
			<-r.Context().Done()
			cancelled.Add(1)
			return
		}
		answered.Add(1)
	}))
	defer down.Close()
	dir := t.TempDir()
	files := map[string]string{
		"pushbackd.yaml":     "egress: {allow: [127.0.0.1]}\ndata_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nsettings: {down: \"" + down.URL + "\"}\nendpoints: [{name: e, saga: held, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/held.yaml":    "name: held\nsteps:\n  - {name: call, http: {url: \"${ settings.down }\"}}\n",
	}
	writeFiles(t, dir, files)
	start := func() *App {
		a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start()
	code, id := postRun(t, a, "e", "{}")
	if code != http.StatusOK {
		t.Fatalf("accept: %d", code)
	}
	for held.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := a.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Stop = %v, want it to report the interrupted run", err)
	}
	// The worker's call was cancelled: it does not run on past Stop on a context nobody
	// can end.
	for deadline := time.Now().Add(5 * time.Second); cancelled.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the interrupted run's downstream call was never cancelled")
		}
	}
	st, err := bolt.Open(filepath.Join(dir, "data", "pushbackd.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := st.GetRun(context.Background(), id)
	if cerr := st.Check(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil || run.Status != store.StatusRunning || len(run.Result) != 0 {
		t.Fatalf("after Stop the run is %+v (%v), want running with no outcome", run, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	holding.Store(false)
	b := start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	}()
	done := waitRun(t, b, id, store.StatusSucceeded)
	if done.Attempt != 2 || answered.Load() != 1 {
		t.Errorf("resumed as attempt %d with %d answered calls, want attempt 2 and one call", done.Attempt, answered.Load())
	}
}
