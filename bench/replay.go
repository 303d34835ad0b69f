package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/bolt"
)

// replayRuns is how many failed runs scenario 7 replays (issue 14: "a bulk replay of
// 10,000 failed runs").
const replayRuns = 10_000

// seedFailed stores n failed runs of the bench partner's async endpoint in the data file.
func seedFailed(path string, n int, body []byte) error {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for int(next.Add(1)) <= n && firstErr.Load() == nil {
				r := &store.Run{Partner: "bench", Endpoint: "async", Saga: "bench-accept", SagaVersion: "1", Mode: "async",
					Status: store.StatusFailed, Attempt: 1, Error: "event: seeded failure",
					Request: store.Request{Method: "POST", Path: "/pushback/bench/async", RemoteIP: "127.0.0.1", ContentType: "application/json", Body: body}}
				if _, err := s.Create(context.Background(), r, store.CreateOptions{}); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		s.Close()
		return err
	}
	return s.Close()
}

// adminSend calls the admin API with a JSON body.
func (pb *pushbackd) adminSend(method, path string, in, out any) error {
	u := "http://" + pb.admin + path
	mustLoopback(u)
	b, _ := json.Marshal(in)
	req, err := http.NewRequest(method, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+pb.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

type benchJob struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Total  int    `json:"total"`
	Done   int    `json:"done"`
	Failed int    `json:"failed"`
}

// scenarioReplay is scenario 7: async accept p99 with and without a bulk replay job of
// 10,000 failed runs going on (at the default limits.replay_rate), in alternating rounds:
// a round without a job, then one with a job started for it and cancelled after it.
func (b *bench) scenarioReplay() error {
	dir := filepath.Join(b.tmp, "s7")
	dataDir := filepath.Join(dir, "data")
	if err := seedFailed(filepath.Join(dataDir, "pushbackd.db"), replayRuns, b.body); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	c := cfg{DataDir: dataDir, MockURL: b.mockURL, Queue: 1_000_000}
	if err := c.write(dir); err != nil {
		return err
	}
	pb, err := b.startPushbackd("s7", &c)
	if err != nil {
		return err
	}
	defer b.stopPB(pb)
	accept := b.request(pb.addr, "async", true, http.StatusOK)
	if _, err := b.attack(accept, b.o.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	without, with := &loadResult{}, &loadResult{}
	// Each round's p99 with a job over the p99 of the round just before it without one:
	// neighbours share the machine's load of the moment, which on a shared machine moves
	// p99 more between rounds than a job does (the merged p99s follow the worst round).
	var ratios []float64
	replayed, allRunning := 0, true
	filter := map[string]any{"filter": map[string]string{"partner": "bench", "endpoint": "async", "status": "failed"}}
	for r := 1; r <= b.o.rounds; r++ {
		res, err := b.attack(accept, b.o.duration)
		if err != nil {
			return err
		}
		without.merge(res)
		p99Without := res.Quantile(0.99)
		fmt.Printf("  round %d %-11s %8.0f req/s  p50 %-8s p99 %-8s\n", r, "no job", res.RPS(), fmtMs(res.Quantile(0.5)), fmtMs(res.Quantile(0.99)))
		var job benchJob
		if err := pb.adminSend(http.MethodPost, "/admin/v1/runs/replay", filter, &job); err != nil {
			return err
		}
		if job.Total != replayRuns {
			return fmt.Errorf("replay job matched %d runs, want %d", job.Total, replayRuns)
		}
		if res, err = b.attack(accept, b.o.duration); err != nil {
			return err
		}
		with.merge(res)
		ratios = append(ratios, float64(res.Quantile(0.99))/float64(p99Without))
		if err := pb.adminSend(http.MethodPost, "/admin/v1/jobs/"+job.ID+"/cancel", nil, &job); err != nil {
			return err
		}
		replayed += job.Done
		allRunning = allRunning && job.Done > 0 && job.Done < job.Total
		fmt.Printf("  round %d %-11s %8.0f req/s  p50 %-8s p99 %-8s replayed %d\n", r, "replay job", res.RPS(), fmtMs(res.Quantile(0.5)), fmtMs(res.Quantile(0.99)), job.Done)
	}
	b.add(row{scenario: "7 async accept, no replay job", pbRPS: without.RPS(), p50: without.Quantile(0.5), p99: without.Quantile(0.99),
		errors: errString(without, http.StatusOK), target: "(reference)", holds: "–"})
	rel := float64(with.Quantile(0.99)) / float64(without.Quantile(0.99))
	b.add(row{scenario: fmt.Sprintf("7 async accept while a bulk replay of %d failed runs runs (replay_rate 50)", replayRuns),
		pbRPS: with.RPS(), p50: with.Quantile(0.5), p99: with.Quantile(0.99), errors: errString(with, http.StatusOK),
		target: "p99 ≤ 1.5× without", holds: holds(rel <= 1.5 && allRunning, "%.2f×", rel), by: "wrk; job progress: GET /admin/v1/jobs/{id}"})
	b.note("scenario 7: alternating rounds of %v without and with a job running; the jobs replayed %d runs in all (%.0f/s)",
		b.o.duration, replayed, float64(replayed)/(b.o.duration*time.Duration(b.o.rounds)).Seconds())
	slices.Sort(ratios)
	b.note("scenario 7: p99 with a job over p99 of the round before without, per round (sorted): %s; median %.2f×",
		fmtRatios(ratios), (ratios[(len(ratios)-1)/2]+ratios[len(ratios)/2])/2)
	return nil
}

func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f×", r)
	}
	return strings.Join(parts, " ")
}
