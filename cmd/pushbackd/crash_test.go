package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

// crashRig is a pushbackd binary with an async endpoint whose saga reports each run to a
// mock downstream in this process, so the test sees runs complete without reading the
// database the server holds.
type crashRig struct {
	t         *testing.T
	bin       string
	dir       string
	addr      string
	adminAddr string
	mu        sync.Mutex
	done      map[string]int // run id -> times the saga reached the downstream
	acked     map[string]bool
	cmd       *exec.Cmd
	logFile   *os.File
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	r := &crashRig{t: t, bin: buildBinary(t), dir: t.TempDir(), done: map[string]int{}, acked: map[string]bool{}}
	mock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct{ Run string }
		_ = json.NewDecoder(req.Body).Decode(&body)
		r.mu.Lock()
		r.done[body.Run]++
		r.mu.Unlock()
	}))
	t.Cleanup(mock.Close)
	r.addr, r.adminAddr = freeAddr(t), freeAddr(t)
	mustWrite(t, filepath.Join(r.dir, "pushbackd.yaml"), fmt.Sprintf("listen: %s\nadmin: {listen: %s}\ndata_dir: %s\nlimits: {queue: 100000, workers: 16}\nlog: {level: warn}\negress: {allow: [127.0.0.1]}\n", r.addr, r.adminAddr, filepath.Join(r.dir, "data")))
	mustWrite(t, filepath.Join(r.dir, "partners/acme.yaml"), fmt.Sprintf(`id: acme
settings: {mock: %q}
endpoints:
  - {name: work, saga: report, security: {method: bearer, tokens: [{value: t}]}}
`, mock.URL))
	mustWrite(t, filepath.Join(r.dir, "sagas/report.yaml"), `name: report
steps:
  - name: tell
    http: {method: POST, url: "${ settings.mock }/done", json: {run: "${ run.id }"}}
    retry: {attempts: 5, backoff: 50ms}
`)
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (r *crashRig) start() {
	r.t.Helper()
	logFile, err := os.OpenFile(filepath.Join(r.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	r.logFile = logFile
	r.cmd = exec.Command(r.bin, "serve", "-config", filepath.Join(r.dir, "pushbackd.yaml"))
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("server did not listen: %v\n%s", err, r.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *crashRig) log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "server.log"))
	return string(b)
}

func (r *crashRig) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
	r.logFile.Close()
}

func (r *crashRig) terminate() {
	r.t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	if err := r.cmd.Wait(); err != nil {
		r.t.Errorf("graceful stop: %v\n%s", err, r.log())
	}
	r.logFile.Close()
}

// load posts up to n requests from 64 connections, recording every 2xx; it kills the
// server once killAfter requests have been acknowledged.
func (r *crashRig) load(n, killAfter int) {
	r.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var sent, acked atomic.Int32
	var killed sync.Once
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(1) <= int32(n) {
				id, _ := r.post(client, "work", `{"n":1}`)
				if id != "" {
					r.mu.Lock()
					r.acked[id] = true
					r.mu.Unlock()
					if acked.Add(1) == int32(killAfter) {
						killed.Do(r.kill)
					}
				}
			}
		}()
	}
	wg.Wait()
	killed.Do(r.kill)
}

// post sends one pushback and returns the run id of a 2xx answer ("" otherwise, e.g. when
// the server died under the request: not acknowledged); reached says the server answered.
func (r *crashRig) post(client *http.Client, endpoint, body string) (id string, reached bool) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.addr+"/pushback/acme/"+endpoint, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var a struct {
		RunID string `json:"run_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	_, _ = io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode/100 != 2 {
		return "", true
	}
	return a.RunID, true
}

// waitAllDone waits until every acknowledged run has reached the downstream and the store
// holds no unfinished run. A run that reached the downstream before a kill but whose
// outcome was not recorded is resumed by the last start: a stop before a worker claims it
// would leave it for the next start, which this test does not make.
func (r *crashRig) waitAllDone() {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r.mu.Lock()
		missing := 0
		for id := range r.acked {
			if r.done[id] == 0 {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 && unfinishedRuns(r.t, r.adminAddr, filepath.Join(r.dir, "data")) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d acknowledged runs never completed\n%s", missing, r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKillNineLosesNoAcknowledgedRun is the durability promise: every request that got a
// 2xx has its run, and every such run finishes, across repeated kill -9 under load.
func TestKillNineLosesNoAcknowledgedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the real binary")
	}
	r := newCrashRig(t)
	for cycle, killAfter := range []int{300, 900, 1500} {
		r.start()
		r.load(3000, killAfter)
		r.mu.Lock()
		t.Logf("cycle %d: %d acknowledged so far", cycle+1, len(r.acked))
		r.mu.Unlock()
	}
	r.start() // the last restart resumes what the kills interrupted
	r.waitAllDone()
	r.terminate()

	st, err := bolt.Open(filepath.Join(r.dir, "data", "pushbackd.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatalf("the database is inconsistent: %v", err)
	}
	ctx := context.Background()
	for id := range r.acked {
		run, err := st.GetRun(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged run %s: %v", id, err)
		}
		if run.Status != store.StatusSucceeded {
			t.Errorf("acknowledged run %s ended %s: %s", id, run.Status, run.Error)
		}
	}
	if left, err := st.Unfinished(ctx); err != nil || len(left) != 0 {
		t.Errorf("%d runs left unfinished (%v)", len(left), err)
	}
	t.Logf("%d acknowledged runs, all succeeded; %d reached the downstream more than once (at-least-once per step)", len(r.acked), r.repeats())
}

func (r *crashRig) repeats() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.done {
		if c > 1 {
			n++
		}
	}
	return n
}

func TestASecondServerOnTheSameDataDirFailsClearly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	r := newCrashRig(t)
	r.start()
	defer r.terminate()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.bin, "serve", "-config", filepath.Join(r.dir, "pushbackd.yaml")).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("the second server hung instead of failing")
	}
	if err == nil || !strings.Contains(string(out), "in use by another") {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}
