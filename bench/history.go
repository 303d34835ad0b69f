package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

var (
	seedPartners  = []string{"bench", "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell"}
	seedSites     = []string{"", "retail", "wholesale"}
	seedEndpoints = []string{"async", "sync", "e2e", "snapdocs", "docusign"}
)

// seed stores n final runs directly into the bbolt file at path, through concurrent
// Creates (the store group-commits them), spread over 10 partners × 3 scopes × 5
// endpoints, each carrying the scenario body as its request.
func seed(path string, n int, body []byte) (time.Duration, error) {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	hdr := map[string][]string{"Content-Type": {"application/json"}, "User-Agent": {"Encompass-Webhooks/1.0"}, sigHeader: {"<redacted>"}}
	for range 1024 { // enough writers to fill the store's 1000-write commits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				if i > 0 && i%100_000 == 0 {
					fmt.Printf("  seeded %d runs (%v)\n", i, time.Since(start).Round(time.Second))
				}
				p, site, ep := seedPartners[i%len(seedPartners)], seedSites[(i/10)%len(seedSites)], seedEndpoints[(i/30)%len(seedEndpoints)]
				status := store.StatusSucceeded
				if i%10 == 3 {
					status = store.StatusFailed
				}
				path := "/pushback/" + p + "/" + ep
				if site != "" {
					path = "/pushback/" + p + "/" + site + "/" + ep
				}
				r := &store.Run{
					Partner: p, Site: site, Endpoint: ep, Saga: "bench-accept", SagaVersion: "1", Mode: "async", Status: status, Attempt: 1,
					Request: store.Request{Method: "POST", Path: path, Headers: hdr, RemoteIP: "127.0.0.1", ContentType: "application/json", Body: body},
					Answer:  &store.Answer{Status: 200, Body: []byte(`{"status":"OK","code":200,"message":"accepted"}`)},
					State:   []byte(`{"steps":{"event":{"status":"succeeded","attempts":1,"output":{"event":"milestone"}}}}`),
				}
				if _, err := s.Create(context.Background(), r, store.CreateOptions{}); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		s.Close()
		return took, err
	}
	return took, s.Close()
}

// scenarioHistory is scenario 6: a data file with o.runs stored runs — startup to ready,
// the latest-50 listing for one endpoint, file size, and accept p99 with and without
// pruning running.
func (b *bench) scenarioHistory() error {
	n := b.o.runs
	dir := filepath.Join(b.tmp, "s6")
	dataDir := filepath.Join(dir, "data")
	dbPath := filepath.Join(dataDir, "pushbackd.db")
	fmt.Printf("  seeding %d runs into %s …\n", n, dbPath)
	took, err := seed(dbPath, n, b.body)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fi, err := os.Stat(dbPath)
	if err != nil {
		return err
	}
	size := fi.Size()
	b.note("scenario 6: seeded %d runs in %v (%.0f runs/s); data file %.0f MB (%.0f bytes/run)", n, took.Round(time.Second), float64(n)/took.Seconds(), float64(size)/(1<<20), float64(size)/float64(n))

	// A: history.max_runs above the count — nothing to prune.
	// limits.queue holds every run the accept windows queue, so their answers are accepts,
	// not queue-full 503s.
	c := cfg{DataDir: dataDir, MaxRuns: 10 * n, MockURL: b.mockURL, Queue: 1_000_000}
	if err := c.write(dir); err != nil {
		return err
	}
	pb, err := b.startPushbackd("s6-noprune", &c)
	if err != nil {
		return err
	}
	ready := pb.readyIn
	_, idle := pb.mem()
	b.add(row{scenario: fmt.Sprintf("6 history: start→ready with %d runs (file %.0f MB)", n, float64(size)/(1<<20)),
		peakRSS: idle, peakAnon: pb.anon(), target: "ready ≤ 1 s", holds: holds(ready <= time.Second, "%.2f s", ready.Seconds()),
		by: "start→/readyz polled by the bench; RSS: /proc"})

	p50, p99, count, err := listing(pb, "endpoint=async&limit=50", 200)
	if err != nil {
		b.stopPB(pb)
		return err
	}
	b.add(row{scenario: "6 history: GET /admin/v1/runs?endpoint=async&limit=50 (200 calls, sequential)", p50: p50, p99: p99,
		errors: fmt.Sprint(0), target: "p50 ≤ 5 ms", holds: holds(p50 <= 5*time.Millisecond && count == 50, "%s, %d runs/page", fmtMs(p50), count),
		by: "the bench's Go HTTP client, one call at a time"})
	q50, q99, qcount, err := listing(pb, "partner=bench&endpoint=async&limit=50", 200)
	if err == nil {
		b.note("scenario 6: partner=bench&endpoint=async&limit=50: p50 %s, p99 %s, %d runs/page", fmtMs(q50), fmtMs(q99), qcount)
	}

	accept := b.request(pb.addr, "async", true, http.StatusOK)
	if _, err := b.attack(accept, b.o.warmup); err != nil {
		b.stopPB(pb)
		return fmt.Errorf("warm-up: %w", err)
	}
	without, err := b.attack(accept, b.o.duration*time.Duration(b.o.rounds))
	peakA, _ := pb.mem()
	b.stopPB(pb)
	if err != nil {
		return err
	}
	b.add(row{scenario: "6 history: async accept, no pruning", pbRPS: without.RPS(), p50: without.Quantile(0.5), p99: without.Quantile(0.99),
		errors: errString(without, http.StatusOK), peakRSS: peakA, peakAnon: pb.anonPeak.Load(), target: "(reference)", holds: "–"})

	// B: the same file, history.max_runs at half the count and a 1 s prune interval: the
	// prune loop starts deleting at start-up.
	c.MaxRuns, c.PruneInterval = n/2, "1s"
	c.Listen, c.Admin = "", ""
	if err := c.write(dir); err != nil {
		return err
	}
	pb, err = b.startPushbackd("s6-prune", &c)
	if err != nil {
		return err
	}
	defer b.stopPB(pb)
	accept = b.request(pb.addr, "async", true, http.StatusOK)
	o0 := oldestRun(pb)
	with, err := b.attack(accept, b.o.duration*time.Duration(b.o.rounds))
	if err != nil {
		return err
	}
	o1 := oldestRun(pb)
	time.Sleep(time.Second)
	o2 := oldestRun(pb)
	peakB, _ := pb.mem()
	pruning := o0 != o1
	rel := float64(with.Quantile(0.99)) / float64(without.Quantile(0.99))
	b.add(row{scenario: fmt.Sprintf("6 history: async accept while pruning to max_runs %d", n/2), pbRPS: with.RPS(), p50: with.Quantile(0.5), p99: with.Quantile(0.99),
		errors: errString(with, http.StatusOK), peakRSS: peakB, peakAnon: pb.anonPeak.Load(), target: "p99 ≤ 2× no-pruning p99",
		holds: holds(rel <= 2 && pruning, "%.2f×", rel)})
	b.storeNote("scenario 6 (pruning run)", pb, with.OK)
	b.note("scenario 6: pruning observed during the accept window: %v (oldest run %s → %s); still pruning after it: %v", pruning, o0, o1, o1 != o2)
	return nil
}
