package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

// rssAnon reads a process's anonymous resident memory (heap, stacks: not the data file's
// mapped pages, which the kernel may drop) from /proc/<pid>/status, in bytes.
func rssAnon(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no RssAnon in /proc/%d/status", pid)
}

// Memory: what senders send is held on disk, not in the process. 2,000 async posts of
// 200 KB that share one serialize_by key (so all but one wait their turn), then 2,000 with
// distinct debounce keys (so all wait out their window): the real binary's anonymous RSS
// stays under 150 MB throughout, and every acknowledged run is in the data file and
// finishes.
func TestLargeParkedAndDebouncedRunsStayOnDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 800 MB to the real binary")
	}
	const (
		posts = 2000
		size  = 200 << 10
		limit = 150 << 20
	)
	r := &crashRig{t: t, bin: buildBinary(t), dir: t.TempDir(), done: map[string]int{}, acked: map[string]bool{}}
	mock := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct{ Run string }
		_ = json.NewDecoder(req.Body).Decode(&body)
		r.mu.Lock()
		r.done[body.Run]++
		r.mu.Unlock()
	}))
	defer mock.Close()
	r.addr, r.adminAddr = freeAddr(t), freeAddr(t)
	mustWrite(t, filepath.Join(r.dir, "pushbackd.yaml"), fmt.Sprintf("listen: %s\nadmin: {listen: %s}\ndata_dir: %s\nlog: {level: warn}\negress: {allow: [127.0.0.1]}\n",
		r.addr, r.adminAddr, filepath.Join(r.dir, "data")))
	auth := "security: {method: bearer, tokens: [{value: t}]}"
	mustWrite(t, filepath.Join(r.dir, "partners/acme.yaml"), fmt.Sprintf(`id: acme
settings: {mock: %q}
endpoints:
  - {name: serial, saga: serial, %[2]s}
  - {name: bounce, saga: bounce, %[2]s}
`, mock.URL, auth))
	tell := `
steps:
  - name: tell
    http: {method: POST, url: "${ settings.mock }/done", json: {run: "${ run.id }"}}
`
	mustWrite(t, filepath.Join(r.dir, "sagas/serial.yaml"), "name: serial\nserialize_by: \"${ body.loan }\""+tell)
	mustWrite(t, filepath.Join(r.dir, "sagas/bounce.yaml"), "name: bounce\ndebounce: {key: \"${ body.loan }\", wait: 1s}"+tell)
	r.start()
	defer r.kill()

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		var err error
		defer func() { sampled <- err }()
		for {
			var n int64
			if n, err = rssAnon(r.cmd.Process.Pid); err != nil {
				return
			}
			if n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	pad := strings.Repeat("x", size)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	send := func(endpoint string, loan func(i int) string) {
		var next atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < posts; i = int(next.Add(1)) - 1 {
					id, _ := r.post(client, endpoint, `{"loan":"`+loan(i)+`","pad":"`+pad+`"}`)
					if id == "" {
						t.Errorf("post %d to %s was not acknowledged", i, endpoint)
						return
					}
					r.mu.Lock()
					r.acked[id] = true
					r.mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	began := time.Now()
	send("serial", func(int) string { return "L-shared" })
	t.Logf("2000 serialized posts acknowledged in %v; RssAnon peak so far %d MiB", time.Since(began).Round(time.Millisecond), peak.Load()>>20)
	send("bounce", func(i int) string { return fmt.Sprint("L-", i) })
	t.Logf("2000 debounced posts acknowledged after %v; RssAnon peak so far %d MiB", time.Since(began).Round(time.Millisecond), peak.Load()>>20)
	r.waitAllDone()
	close(stop)
	if err := <-sampled; err != nil {
		t.Fatalf("sampling RssAnon: %v", err)
	}
	t.Logf("every run finished %v after the first post; RssAnon peak %d MiB (limit %d MiB)", time.Since(began).Round(time.Millisecond), peak.Load()>>20, limit>>20)
	if p := peak.Load(); p >= limit {
		t.Errorf("RssAnon reached %d MiB, want under %d MiB", p>>20, limit>>20)
	}
	r.terminate()

	st, err := bolt.Open(filepath.Join(r.dir, "data", "pushbackd.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.acked) != 2*posts {
		t.Fatalf("%d posts acknowledged, want %d", len(r.acked), 2*posts)
	}
	for id := range r.acked {
		run, err := st.GetRun(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged run %s: %v", id, err)
		}
		if run.Status != store.StatusSucceeded || len(run.Request.Body) < size {
			t.Fatalf("acknowledged run %s is %s with a %d-byte body", id, run.Status, len(run.Request.Body))
		}
	}
}
