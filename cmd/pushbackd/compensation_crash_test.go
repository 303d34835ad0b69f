package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// heldRig is a crash rig whose mock downstream counts every call by path, answers 500 on
// the paths in fail, and holds the calls to the paths in hold open until the client goes
// away — here, until the test kills pushbackd with the call in flight.
type heldRig struct {
	*crashRig
	calls   map[string]int
	hold    map[string]bool
	fail    map[string]bool
	arrived chan string // a held call arrived
}

func newHeldRig(t *testing.T, sagas map[string]string) *heldRig {
	t.Helper()
	r := &heldRig{crashRig: &crashRig{t: t, bin: buildBinary(t), dir: t.TempDir(), done: map[string]int{}, acked: map[string]bool{}},
		calls: map[string]int{}, hold: map[string]bool{}, fail: map[string]bool{}, arrived: make(chan string, 16)}
	mock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.calls[req.URL.Path]++
		hold, fail := r.hold[req.URL.Path], r.fail[req.URL.Path]
		r.mu.Unlock()
		if hold {
			r.arrived <- req.URL.Path
			select {
			case <-req.Context().Done(): // the process died
			case <-time.After(30 * time.Second): // only a broken test gets here
			}
			return
		}
		if fail {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x-1"}`)
	}))
	t.Cleanup(mock.Close)
	r.addr, r.adminAddr = freeAddr(t), freeAddr(t)
	mustWrite(t, filepath.Join(r.dir, "pushbackd.yaml"), fmt.Sprintf("listen: %s\nadmin: {listen: %s}\ndata_dir: %s\nlog: {level: warn}\negress: {allow: [127.0.0.1]}\n",
		r.addr, r.adminAddr, filepath.Join(r.dir, "data")))
	partner := fmt.Sprintf("id: acme\nsettings: {mock: %q}\nendpoints:\n", mock.URL)
	for name, src := range sagas {
		partner += fmt.Sprintf("  - {name: %s, saga: %s, security: {method: bearer, tokens: [{value: t}]}}\n", name, name)
		mustWrite(t, filepath.Join(r.dir, "sagas", name+".yaml"), src)
	}
	mustWrite(t, filepath.Join(r.dir, "partners/acme.yaml"), partner)
	return r
}

func (r *heldRig) set(f func(r *heldRig)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *heldRig) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.calls)
}

// waitHeld waits until the held call to path is in flight.
func (r *heldRig) waitHeld(path string) {
	r.t.Helper()
	select {
	case got := <-r.arrived:
		if got != path {
			r.t.Fatalf("held call to %s, want %s", got, path)
		}
	case <-time.After(20 * time.Second):
		r.t.Fatalf("no call to %s arrived; calls so far %v\n%s", path, r.counts(), r.log())
	}
}

// postRun sends one async pushback and returns its run id.
func (r *heldRig) postRun(endpoint string) string {
	r.t.Helper()
	id, _ := r.post(&http.Client{Timeout: 10 * time.Second}, endpoint, `{}`)
	if id == "" {
		r.t.Fatalf("pushback to %s not acknowledged\n%s", endpoint, r.log())
	}
	return id
}

// cli runs a pushbackd command against this rig's config, in this process.
func (r *heldRig) cli(args ...string) (int, string, string) {
	r.t.Helper()
	return runCLI(r.t, "", append(args, "-config", filepath.Join(r.dir, "pushbackd.yaml"))...)
}

// finalRun waits until `pushbackd runs show ID` reports a final status.
func (r *heldRig) finalRun(id string) map[string]any {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errOut := r.cli("runs", "show", id, "-json")
		var run map[string]any
		if code == 0 && json.Unmarshal([]byte(out), &run) == nil && store.Status(fmt.Sprint(run["status"])).Final() {
			return run
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("run %s did not finish: %d %s %s\n%s", id, code, out, errOut, r.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const reserveSaga = `name: reserve
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.mock }/reserve"}
    retry: {attempts: 2, backoff: 50ms}
    compensate: {http: {method: DELETE, url: "${ settings.mock }/undo/${ steps.reserve.output.body.id }"}}
  - name: call
    http: {method: POST, url: "${ settings.mock }/call"}
    retry: {attempts: 2, backoff: 50ms}
on_failure:
  http: {method: POST, url: "${ settings.mock }/alert", json: {step: "${ error.step }"}}
`

// TestACompensationCutByKillNineFinishesAfterTheRestart: the step after a reservation
// fails, the reservation's compensation is in flight, and the process is killed. The
// restart must finish the compensation, not go back to the steps.
func TestACompensationCutByKillNineFinishesAfterTheRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the real binary")
	}
	tests := []struct {
		name      string
		undoFails bool
		status    store.Status
		undoCalls int // the held call, then the restart's tries
	}{
		{"the compensation succeeds after the restart: compensated", false, store.StatusCompensated, 2},
		{"the compensation fails after the restart: compensation_failed, after its retries", true, store.StatusCompensationFailed, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newHeldRig(t, map[string]string{"reserve": reserveSaga})
			r.set(func(r *heldRig) { r.hold["/undo/x-1"], r.fail["/call"] = true, true })
			r.start()
			id := r.postRun("reserve")
			r.waitHeld("/undo/x-1")
			r.kill()
			before := r.counts()
			r.set(func(r *heldRig) { r.hold["/undo/x-1"], r.fail["/undo/x-1"] = false, tc.undoFails })
			r.start()
			run := r.finalRun(id)
			defer r.terminate()

			if got := store.Status(fmt.Sprint(run["status"])); got != tc.status {
				t.Errorf("status %s, want %s: %v", got, tc.status, run["error"])
			}
			want := map[string]int{"/reserve": 1, "/call": 2, "/undo/x-1": tc.undoCalls, "/alert": 1}
			if got := r.counts(); !maps.Equal(got, want) {
				t.Errorf("calls %v, want %v (before the kill: %v): no forward step again, the failed one not retried", got, want, before)
			}
			if before["/call"] != 2 {
				t.Errorf("the call failed after %d tries before the kill, want 2", before["/call"])
			}
			result, _ := run["result"].(map[string]any)
			comps, _ := result["compensations"].([]any)
			if len(comps) != 1 {
				t.Fatalf("compensations in history %v, want the one, once", comps)
			}
			if c := comps[0].(map[string]any); (c["status"] == "failed") != tc.undoFails {
				t.Errorf("compensation record %v", c)
			}
			if run["attempt"] != 2.0 {
				t.Errorf("attempt %v, want 2", run["attempt"])
			}
			code, out, errOut := r.cli("runs", "list", "-status", string(tc.status))
			if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, string(tc.status)) {
				t.Errorf("runs list -status %s: %d\n%s%s", tc.status, code, out, errOut)
			}
			code, out, errOut = r.cli("runs", "show", id)
			if warned := strings.Contains(out, "undo      incomplete"); code != 0 || warned != tc.undoFails || !strings.Contains(out, "undo reserve") {
				t.Errorf("runs show: %d, warns of an incomplete undo: %v\n%s%s", code, warned, out, errOut)
			}
		})
	}
}

const pinnedV1 = `name: pinned
steps:
  - name: first
    http: {method: POST, url: "${ settings.mock }/first"}
  - name: slow
    http: {method: POST, url: "${ settings.mock }/hold"}
  - name: tail
    http: {method: POST, url: "${ settings.mock }/old"}
`

// TestARunResumedAfterItsSagaWasEditedFinishesOnTheOldVersion: a run is in its second step
// when the saga is edited through the admin API, then the process is killed. After the
// restart the run finishes on the steps it started with; new runs take the edit.
func TestARunResumedAfterItsSagaWasEditedFinishesOnTheOldVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the real binary")
	}
	r := newHeldRig(t, map[string]string{"pinned": pinnedV1})
	r.set(func(r *heldRig) { r.hold["/hold"] = true })
	r.start()
	id := r.postRun("pinned")
	r.waitHeld("/hold")

	v2 := strings.Replace(pinnedV1, "/old", "/new", 1)
	token, err := os.ReadFile(filepath.Join(r.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+r.adminAddr+"/admin/v1/sagas/pinned", strings.NewReader(v2))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT the edit: %d %s", resp.StatusCode, body)
	}
	r.kill()
	r.set(func(r *heldRig) { r.hold["/hold"] = false })
	r.start()
	defer r.terminate()

	run := r.finalRun(id)
	sum := sha256.Sum256([]byte(pinnedV1))
	if run["status"] != "succeeded" || run["saga_version"] != hex.EncodeToString(sum[:])[:12] {
		t.Errorf("status %v version %v error %v, want succeeded on the first version", run["status"], run["saga_version"], run["error"])
	}
	if got, want := r.counts(), map[string]int{"/first": 1, "/hold": 2, "/old": 1}; !maps.Equal(got, want) {
		t.Errorf("calls %v, want %v: the old version's steps, the held one again, nothing of the edit", got, want)
	}
	next := r.finalRun(r.postRun("pinned"))
	if next["status"] != "succeeded" || r.counts()["/new"] != 1 {
		t.Errorf("a new run: %v, calls %v; want it on the edit", next["status"], r.counts())
	}
}
