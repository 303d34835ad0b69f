package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// startWith runs an app on a config directory made of files, with free ports.
func startWith(t *testing.T, files map[string]string) *App {
	t.Helper()
	dir := t.TempDir()
	files["pushbackd.yaml"] += "data_dir: " + filepath.Join(dir, "data") + "\n"
	writeFiles(t, dir, files)
	a := runApp(t, dir, zap.NewNop(), false)
	return a
}

func TestOverloadIsRefusedWithRetryAfterAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of connections")
	}
	gate := make(chan struct{})
	var released sync.Once
	release := func() { released.Do(func() { close(gate) }) }
	var calls atomic.Int32
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-gate
	}))
	defer down.Close()
	defer release()
	a := startWith(t, map[string]string{
		// read_header_timeout well past the default 5 s: under -race on a loaded machine, 2,000
		// connections at once can wait that long for their headers to be read, and a
		// connection closed for it would be neither an accept nor a refusal.
		"pushbackd.yaml":     "limits: {workers: 2, queue: 50, read_header_timeout: 60s}\negress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": "id: acme\nsettings: {down: \"" + down.URL + "\"}\nendpoints: [{name: e, saga: held, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/held.yaml":    "name: held\nsteps:\n  - {name: call, http: {url: \"${ settings.down }\", timeout: 60s}}\n",
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const conns = 2000
	codes := sync.Map{}
	var missingRetryAfter atomic.Int32
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/pushback/acme/e", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
			req.Header.Set("Authorization", "Bearer t")
			resp, err := c.Do(req)
			if err != nil {
				codes.Store(fmt.Sprintf("error %d", i), err.Error())
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			n, _ := codes.LoadOrStore(resp.StatusCode, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
				missingRetryAfter.Add(1)
			}
		}()
	}
	wg.Wait()
	var accepted, refused int32
	codes.Range(func(k, v any) bool {
		switch k {
		case 200:
			accepted = v.(*atomic.Int32).Load()
		case 503:
			refused = v.(*atomic.Int32).Load()
		default:
			t.Errorf("unexpected answer %v: %v", k, v)
		}
		return true
	})
	// At most 2 runs executing (held by the downstream) + 50 queued; at least the 50 the
	// queue holds (fewer executing if a worker had not yet taken its run when the queue
	// filled). Everything else is refused.
	if accepted < 50 || accepted > 52 || refused != conns-accepted || missingRetryAfter.Load() != 0 {
		t.Fatalf("%d accepted, %d refused (%d without Retry-After); want 50..52 accepted, the rest refused", accepted, refused, missingRetryAfter.Load())
	}
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grown := int64(during.HeapInuse) - int64(before.HeapInuse); grown > 100<<20 {
		t.Errorf("heap grew %d MiB under a full queue", grown>>20)
	}

	release() // the downstream answers again: the queue drains by itself
	deadline := time.Now().Add(20 * time.Second)
	for a.runs.QueueDepth() > 0 || calls.Load() < accepted {
		if time.Now().After(deadline) {
			t.Fatalf("queue did not drain: depth %d, %d calls", a.runs.QueueDepth(), calls.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/pushback/acme/e", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the overload: %v %v", resp, err)
	}
	resp.Body.Close()
	t.Logf("%d connections: %d accepted, %d refused with 503 + Retry-After; heap %d → %d MiB", conns, accepted, refused, before.HeapInuse>>20, during.HeapInuse>>20)
}

func TestSlowHeadersAreCutWhileNormalTrafficKeepsItsLatency(t *testing.T) {
	a := startWith(t, map[string]string{
		"pushbackd.yaml":     "limits: {read_header_timeout: 300ms}\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	// 300 slowloris connections: a request line, then one header byte every 50 ms.
	const slow = 300
	closedAt := make(chan time.Duration, slow)
	start := time.Now()
	for range slow {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			_, _ = io.WriteString(c, "POST /pushback/acme/e HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			for {
				if _, err := c.Write([]byte("a")); err != nil {
					closedAt <- time.Since(start)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	// Normal requests while the slow ones hang on.
	var worst time.Duration
	var took []time.Duration
	for range 21 {
		t0 := time.Now()
		req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/pushback/acme/e", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("normal request during slowloris: %v %v", resp, err)
		}
		resp.Body.Close()
		took = append(took, time.Since(t0))
		worst = max(worst, took[len(took)-1])
	}
	slices.Sort(took)
	if median := took[len(took)/2]; median > 250*time.Millisecond {
		t.Errorf("normal requests took %v (median) while slow connections were open", median)
	}
	var last time.Duration
	for range slow {
		select {
		case d := <-closedAt:
			last = max(last, d)
		case <-time.After(10 * time.Second):
			t.Fatal("a slow-header connection was never cut")
		}
	}
	t.Logf("%d slow-header connections all cut by %v (read_header_timeout 300ms); normal requests meanwhile: median %v, worst %v", slow, last, took[len(took)/2], worst)
}

func TestOversizedHeadersAreRejected(t *testing.T) {
	a := startWith(t, map[string]string{
		"pushbackd.yaml":     "limits: {max_header_bytes: 8192}\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	c, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /pushback/acme/e HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nX-Big: %s\r\nContent-Length: 0\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("got %d, want 431", resp.StatusCode)
	}
}

// limits.queue bounds the waiting runs too: a run handed to a free worker at its accept
// can suspend in a retry wait, so once the store holds limits.queue runnable runs, accepts
// are refused even while workers are free. The waiting runs stay within the queue plus the
// workers, however long a downstream throttles.
func TestTheQueueLimitBoundsRunsSuspendedInRetryWaits(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	a := startWith(t, map[string]string{
		"pushbackd.yaml":       "limits: {workers: 2, queue: 5}\negress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml":   "id: acme\nsettings: {down: \"" + down.URL + "\"}\nendpoints: [{name: e, saga: throttled, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/throttled.yaml": "name: throttled\nsteps:\n  - {name: call, http: {url: \"${ settings.down }\"}, retry: {attempts: 3}}\n",
	})
	accepted, refused := 0, 0
	for range 20 {
		code, _ := post(t, a, "e", `{}`)
		switch code {
		case http.StatusOK, http.StatusAccepted:
			accepted++
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("post answered %d", code)
		}
		time.Sleep(20 * time.Millisecond) // let each accepted run reach its wait
	}
	n, err := a.store.Runnable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if refused == 0 || n > 5+2 {
		t.Fatalf("%d accepted, %d refused, %d runnable; want refusals once 5 runs wait, and at most 7 runnable", accepted, refused, n)
	}
}
