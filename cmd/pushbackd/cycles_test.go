package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

// mixedRig is a crash rig with every kind of traffic: sync, async, idempotent duplicates,
// debounced bursts, a downstream that fails each run's first call with Retry-After: 1, so
// runs are suspended in retry waits when the process dies, and a saga whose second step
// fails once per run, so its first step is undone by a compensation that answers 503
// Retry-After: 1 to its first try and is slow to its second: compensations are waiting
// and in flight when the process dies.
type mixedRig struct {
	*crashRig
	keyRuns   map[string]map[string]bool // idempotency key -> runs that reached the downstream
	firstTry  map[string]bool            // runs the flaky downstream has already failed once
	kinds     map[string]string          // acknowledged run id -> endpoint
	suspended int                        // runs found suspended in a retry wait after the kills

	refused      map[string]bool // undo runs whose failing step has failed (once)
	undoCalls    map[string]int  // undo run -> calls of its compensation
	lateForward  map[string]int  // undo run -> forward calls after its compensation began
	compensating int             // runs found past their forward pass after the kills
	compWaits    int             // ...of them suspended in a compensation's retry wait
}

func newMixedRig(t *testing.T) *mixedRig {
	t.Helper()
	r := &mixedRig{crashRig: &crashRig{t: t, bin: buildBinary(t), dir: t.TempDir(), done: map[string]int{}, acked: map[string]bool{}},
		keyRuns: map[string]map[string]bool{}, firstTry: map[string]bool{}, kinds: map[string]string{},
		refused: map[string]bool{}, undoCalls: map[string]int{}, lateForward: map[string]int{}}
	mock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct{ Run, Key string }
		_ = json.NewDecoder(req.Body).Decode(&body)
		r.mu.Lock()
		if req.URL.Path == "/reserve" || req.URL.Path == "/refuse" || req.URL.Path == "/unreserve" {
			r.undoPath(w, req.URL.Path, body.Run) // unlocks
			return
		}
		defer r.mu.Unlock()
		if req.URL.Path == "/flaky" && !r.firstTry[body.Run] {
			r.firstTry[body.Run] = true
			w.Header().Set("Retry-After", "1")
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		r.done[body.Run]++
		if body.Key != "" {
			if r.keyRuns[body.Key] == nil {
				r.keyRuns[body.Key] = map[string]bool{}
			}
			r.keyRuns[body.Key][body.Run] = true
		}
	}))
	t.Cleanup(mock.Close)
	r.addr, r.adminAddr = freeAddr(t), freeAddr(t)
	mustWrite(t, filepath.Join(r.dir, "pushbackd.yaml"), fmt.Sprintf("listen: %s\nadmin: {listen: %s}\ndata_dir: %s\nlimits: {queue: 100000, workers: 16, auth_failures: {per_client: 100000}}\nlog: {level: warn}\negress: {allow: [127.0.0.1]}\n",
		r.addr, r.adminAddr, filepath.Join(r.dir, "data")))
	auth := "security: {method: bearer, tokens: [{value: t}]}"
	mustWrite(t, filepath.Join(r.dir, "partners/acme.yaml"), fmt.Sprintf(`id: acme
settings: {mock: %q}
endpoints:
  - {name: work, saga: report, %[2]s}
  - {name: sync, saga: report, mode: sync, %[2]s}
  - {name: once, saga: report, idempotency_key: "${ body.key }", %[2]s}
  - {name: bounce, saga: bounce, %[2]s}
  - {name: flaky, saga: flaky, %[2]s}
  - {name: undo, saga: undo, %[2]s}
`, mock.URL, auth))
	mustWrite(t, filepath.Join(r.dir, "sagas/report.yaml"), `name: report
steps:
  - name: tell
    http: {method: POST, url: "${ settings.mock }/done", json: {run: "${ run.id }", key: "${ body.key ?? '' }"}}
    retry: {attempts: 5, backoff: 20ms}
`)
	mustWrite(t, filepath.Join(r.dir, "sagas/bounce.yaml"), `name: bounce
debounce: {key: "${ body.loan }", wait: 100ms}
steps:
  - name: tell
    http: {method: POST, url: "${ settings.mock }/done", json: {run: "${ run.id }"}}
    retry: {attempts: 5, backoff: 20ms}
`)
	mustWrite(t, filepath.Join(r.dir, "sagas/flaky.yaml"), `name: flaky
steps:
  - {name: before, set: {x: 1}}
  - name: tell
    http: {method: POST, url: "${ settings.mock }/flaky", json: {run: "${ run.id }"}}
    retry: {attempts: 5, backoff: 300ms}
`)
	mustWrite(t, filepath.Join(r.dir, "sagas/undo.yaml"), `name: undo
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.mock }/reserve", json: {run: "${ run.id }"}}
    compensate: {http: {method: POST, url: "${ settings.mock }/unreserve", json: {run: "${ run.id }"}}}
    retry: {attempts: 5, backoff: 300ms}
  - name: refuse
    http: {method: POST, url: "${ settings.mock }/refuse", json: {run: "${ run.id }"}}
`)
	return r
}

// undoPath answers the undo saga's calls for run; the caller holds r.mu, which it
// releases. /refuse fails a run's first call only, so a forward pass run again after its
// compensation began would succeed; /unreserve answers 503 Retry-After: 1 to a run's
// first call and takes 150ms over the next, so kills find compensations both waiting and
// in flight.
func (r *mixedRig) undoPath(w http.ResponseWriter, path, run string) {
	if path != "/unreserve" && r.undoCalls[run] > 0 {
		r.lateForward[run]++
	}
	switch path {
	case "/refuse":
		first := !r.refused[run]
		r.refused[run] = true
		r.mu.Unlock()
		if first {
			http.Error(w, "refused", http.StatusInternalServerError)
		}
	case "/unreserve":
		r.undoCalls[run]++
		n := r.undoCalls[run]
		r.mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		time.Sleep(150 * time.Millisecond)
	default:
		r.mu.Unlock()
	}
}

// mixedLoad sends a mix of requests from 32 connections until killAfter acknowledgements,
// then kills the server.
func (r *mixedRig) mixedLoad(killAfter int, cycle int) {
	r.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var acked atomic.Int32
	var killed sync.Once
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
			for !stop.Load() {
				endpoint, body := "work", `{}`
				switch n := rng.IntN(10); {
				case n == 0:
					endpoint = "sync"
				case n < 4:
					endpoint, body = "once", fmt.Sprintf(`{"key":"k%d"}`, rng.IntN(200)) // many duplicates
				case n < 6:
					endpoint, body = "bounce", fmt.Sprintf(`{"loan":"L%d"}`, rng.IntN(20)) // bursts per loan
				case n < 8:
					endpoint = "flaky"
				case n == 8:
					endpoint = "undo"
				}
				id, reached := r.post(client, endpoint, body)
				if !reached && stop.Load() {
					return
				}
				if id != "" {
					r.mu.Lock()
					r.acked[id] = true
					if r.kinds[id] == "" {
						r.kinds[id] = endpoint
					}
					r.mu.Unlock()
					if acked.Add(1) == int32(killAfter) {
						killed.Do(func() { stop.Store(true); r.kill() })
					}
				}
			}
		}()
	}
	wg.Wait()
	killed.Do(r.kill)
}

// checkStore opens the database of the dead process: consistent, and every acknowledged
// run is there.
func (r *mixedRig) checkStore(cycle int) {
	r.t.Helper()
	st, err := bolt.Open(filepath.Join(r.dir, "data", "pushbackd.db"), bolt.Options{})
	if err != nil {
		r.t.Fatalf("cycle %d: %v", cycle, err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		r.t.Fatalf("cycle %d: inconsistent database after kill -9: %v", cycle, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.acked {
		run, err := st.GetRun(context.Background(), id)
		if err != nil {
			r.t.Fatalf("cycle %d: acknowledged run %s (%s): %v", cycle, id, r.kinds[id], err)
		}
		if run.Status == store.StatusWaiting && len(run.State) > 0 {
			r.suspended++ // a retry wait, not a debounce window: a checkpoint holds it
		}
		var cp saga.State
		if run.Status.Final() || len(run.State) == 0 || json.Unmarshal(run.State, &cp) != nil || cp.Phase != saga.PhaseCompensating {
			continue
		}
		r.compensating++
		if run.Status == store.StatusWaiting {
			r.compWaits++
		}
	}
}

// unfinished asks the admin API how many runs are not final yet.
func (r *mixedRig) unfinished() int {
	r.t.Helper()
	return unfinishedRuns(r.t, r.adminAddr, filepath.Join(r.dir, "data"))
}

// unfinishedRuns asks a running server's admin API (its token generated into dataDir) how
// many runs are queued, running or waiting.
func unfinishedRuns(t *testing.T, adminAddr, dataDir string) int {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, st := range []string{"queued", "running", "waiting"} {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/admin/v1/runs?limit=1000&status="+st, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct{ Runs []json.RawMessage }
		_ = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		n += len(page.Runs)
	}
	return n
}

// TestTenCrashCyclesUnderMixedLoad: ten kill -9 / restart cycles under sync, async,
// duplicate, debounced, retrying and compensating traffic, with runs suspended in retry
// waits and compensations waiting and in flight at the kills. After each kill the
// database is consistent and holds every acknowledged run; at the end every run is final,
// none is stuck running, no idempotency key ran twice, and no run whose compensation
// began ended succeeded or had a forward step called again.
func TestTenCrashCyclesUnderMixedLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the real binary ten times")
	}
	r := newMixedRig(t)
	for cycle := 1; cycle <= 10; cycle++ {
		r.start()
		r.mixedLoad(100+cycle*37, cycle)
		r.checkStore(cycle)
	}
	r.start()
	deadline := time.Now().Add(60 * time.Second)
	for r.unfinished() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d runs never finished\n%s", r.unfinished(), r.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.terminate()

	st, err := bolt.Open(filepath.Join(r.dir, "data", "pushbackd.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	if left, _ := st.Unfinished(context.Background()); len(left) != 0 {
		t.Fatalf("%d runs left unfinished", len(left))
	}
	if r.suspended == 0 {
		t.Error("no run was suspended in a retry wait at any of the kills: the test no longer covers them")
	}
	if r.compWaits == 0 || r.compensating == r.compWaits {
		t.Errorf("kills found %d runs compensating, %d of them suspended in a compensation's retry wait: the test no longer covers both waiting and in-flight compensations",
			r.compensating, r.compWaits)
	}
	byStatus := map[string]int{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, kind := range r.kinds {
		run, err := st.GetRun(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged %s run %s: %v", kind, id, err)
		}
		byStatus[kind+" "+string(run.Status)]++
		if kind == "undo" {
			began := r.undoCalls[id] > 0
			switch {
			case r.lateForward[id] > 0:
				t.Errorf("undo run %s: %d forward calls after its compensation began", id, r.lateForward[id])
			case began && run.Status != store.StatusCompensated:
				t.Errorf("undo run %s ended %s after its compensation began, want compensated: %s", id, run.Status, run.Error)
			case !began && run.Status != store.StatusSucceeded:
				// A kill between the failure and the write that leaves the forward pass runs
				// the failing step again, and it succeeds: nothing was undone yet.
				t.Errorf("undo run %s ended %s without a compensation call: %s", id, run.Status, run.Error)
			}
			continue
		}
		switch {
		case run.Status == store.StatusSucceeded:
		case kind == "bounce" && run.Status == store.StatusSuperseded:
		default:
			t.Errorf("acknowledged %s run %s ended %s: %s", kind, id, run.Status, run.Error)
		}
	}
	for key, runs := range r.keyRuns {
		if len(runs) > 1 {
			t.Errorf("idempotency key %s ran as %d runs", key, len(runs))
		}
	}
	t.Logf("%d acknowledged runs over 10 kills (a run was found suspended in a retry wait after a kill %d times, compensating %d times, %d of them in a compensation's wait): %v; %d idempotency keys, each ran once",
		len(r.kinds), r.suspended, r.compensating, r.compWaits, byStatus, len(r.keyRuns))
}
