package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// wrkLine renders samples (µs) as wrk.lua's done() would: wrk's percentile rule
// (rank = round(p/100 × count + 0.5), the first value whose running count reaches it) on
// the script's grid.
func wrkLine(samples []int64, codes map[int]int) string {
	s := slices.Sorted(slices.Values(samples))
	pct := func(p float64) int64 {
		rank := int(math.Round(p/100*float64(len(s)) + 0.5))
		return s[min(max(rank, 1), len(s))-1]
	}
	var grid []string
	for i := 1; i <= 990; i++ {
		p := float64(i) * 0.1
		grid = append(grid, fmt.Sprintf("[%.2f,%d]", p, pct(p)))
	}
	for i := 1; i <= 100; i++ {
		p := 99 + float64(i)*0.01
		grid = append(grid, fmt.Sprintf("[%.2f,%d]", p, pct(p)))
	}
	var cs []string
	for c, n := range codes {
		cs = append(cs, fmt.Sprintf(`"%d":%d`, c, n))
	}
	return fmt.Sprintf(`bench-wrk: {"requests":%d,"duration_us":2000000,"codes":{%s},"errors":{"connect":0,"read":0,"write":0,"timeout":0},"p50_us":%d,"p99_us":%d,"max_us":%d,"percentiles_us":[%s]}`,
		len(samples), strings.Join(cs, ","), pct(50), pct(99), s[len(s)-1], strings.Join(grid, ","))
}

func TestParseWrk(t *testing.T) {
	const head = "Running 2s test @ http://127.0.0.1:1/x\n  2 threads and 4 connections\n"
	grid := `"percentiles_us":[[50,1000],[99,5000],[100,9000]]`
	tests := []struct {
		name             string
		out              string
		expect, expect2  int
		wantErr          string
		wantOK, wantReqs int
		wantCodes        map[int]int
		wantP50          time.Duration
	}{
		{
			name:   "the expected code counts as OK and every other code as unexpected",
			out:    head + `bench-wrk: {"requests":10,"duration_us":2000000,"codes":{"200":7,"503":3},"errors":{"connect":0,"read":0,"write":0,"timeout":0},` + grid + "}\n",
			expect: 200, wantOK: 7, wantReqs: 10, wantCodes: map[int]int{200: 7, 503: 3}, wantP50: time.Millisecond,
		},
		{
			name:   "a second expected code counts as OK too",
			out:    `bench-wrk: {"requests":30,"duration_us":1000000,"codes":{"401":10,"429":20},"errors":{},` + grid + "}",
			expect: 401, expect2: 429, wantOK: 30, wantReqs: 30, wantCodes: map[int]int{401: 10, 429: 20}, wantP50: time.Millisecond,
		},
		{
			name:   "socket errors are requests under code 0",
			out:    `bench-wrk: {"requests":5,"duration_us":1000000,"codes":{"200":5},"errors":{"connect":1,"read":2,"write":0,"timeout":3},` + grid + "}",
			expect: 200, wantOK: 5, wantReqs: 11, wantCodes: map[int]int{200: 5, 0: 6}, wantP50: time.Millisecond,
		},
		{
			name:    "output without the script's line is an error that names the script",
			out:     head + "Requests/sec: 100.0\n",
			wantErr: "bench-wrk.lua",
		},
		{
			name:    "counts that disagree with wrk's are an error",
			out:     `bench-wrk: {"requests":10,"duration_us":1000000,"codes":{"200":9},"errors":{},` + grid + "}",
			wantErr: "counted 9 answers, wrk 10",
		},
		{
			name:    "percentiles out of order are an error",
			out:     `bench-wrk: {"requests":1,"duration_us":1000000,"codes":{"200":1},"errors":{},"percentiles_us":[[50,1],[40,2]]}`,
			wantErr: "not increasing",
		},
		{
			name:    "a report without a duration is an error",
			out:     `bench-wrk: {"requests":1,"codes":{"200":1},"errors":{},"percentiles_us":[]}`,
			wantErr: "without a duration",
		},
		{
			name:    "a torn report line is an error",
			out:     `bench-wrk: {"requests":1,"duration_us":`,
			wantErr: "parse the report line",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := parseWrk([]byte(tt.out), tt.expect, tt.expect2)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tt.wantOK || res.Requests != tt.wantReqs {
				t.Errorf("OK %d of %d, want %d of %d", res.OK, res.Requests, tt.wantOK, tt.wantReqs)
			}
			for c, n := range tt.wantCodes {
				if res.Codes[c] != n {
					t.Errorf("code %d: %d, want %d (all %v)", c, res.Codes[c], n, res.Codes)
				}
			}
			if got := res.Quantile(0.5); got != tt.wantP50 {
				t.Errorf("p50 %v, want %v", got, tt.wantP50)
			}
		})
	}
}

// TestQuantileMergesRounds checks that rounds merged through wrk's percentile grid give
// the percentiles of all their samples together, within the grid's resolution, however
// the rounds differ in size and speed.
func TestQuantileMergesRounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	exp := func(n int, meanUS float64) []int64 {
		s := make([]int64, n)
		for i := range s {
			s[i] = int64(rng.ExpFloat64()*meanUS) + 50
		}
		return s
	}
	tests := []struct {
		name   string
		rounds [][]int64
	}{
		{"one round gives wrk's own percentiles", [][]int64{exp(20_000, 2000)}},
		{"equal rounds of one speed merge into one distribution", [][]int64{exp(20_000, 2000), exp(20_000, 2000)}},
		{"a slow small round weighs by its answers, not as half", [][]int64{exp(30_000, 1000), exp(5_000, 8000), exp(30_000, 1200)}},
		{"a round with a long tail moves the merged p99", [][]int64{exp(10_000, 1000), append(exp(9_800, 1000), exp(200, 50_000)...)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			merged := &loadResult{}
			var all []int64
			for _, r := range tt.rounds {
				res, err := parseWrk([]byte(wrkLine(r, map[int]int{200: len(r)})), 200, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(tt.rounds) == 1 {
					// A single round's p50 and p99 are grid points: wrk's own figures.
					s := slices.Sorted(slices.Values(r))
					for _, q := range []float64{0.5, 0.99} {
						rank := int(math.Round(q*float64(len(s)) + 0.5))
						if got, want := res.Quantile(q), time.Duration(s[rank-1])*time.Microsecond; got != want {
							t.Errorf("q%.2f: %v, want wrk's %v", q, got, want)
						}
					}
				}
				merged.merge(res)
				all = append(all, r...)
			}
			slices.Sort(all)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
				got := merged.Quantile(q)
				// Each round's grid is 0.1 % apart up to its own p99 (0.01 % above), and a
				// merged percentile may fall at any of a round's own percentiles, so the
				// answer may sit up to 0.1 % of the answers away in rank.
				tol := 0.001
				lo := all[int(math.Max(0, (q-tol)*float64(len(all))-1))]
				hi := all[int(math.Min(float64(len(all)-1), (q+tol)*float64(len(all))+1))]
				if us := int64(got / time.Microsecond); us < lo || us > hi {
					t.Errorf("q%.3f: %d µs, want within [%d, %d] µs (exact %d)", q, us, lo, hi, all[int(q*float64(len(all)))])
				}
			}
		})
	}
}

// TestWrkScript runs the real wrk with the bench's script against a local server: the
// server must receive the POST body and signature header, and the codes wrk.lua counts
// must add up to what wrk reports. It needs wrk on PATH (the bench and .ci/run install
// it): without it the test skips, or fails when PUSHBACKD_REQUIRE_TOOLS is set, as in CI.
func TestWrkScript(t *testing.T) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		if os.Getenv("PUSHBACKD_REQUIRE_TOOLS") != "" {
			t.Fatal("wrk is not installed")
		}
		t.Skip("wrk not on PATH (apt-get install wrk; set PUSHBACKD_REQUIRE_TOOLS=1 to make this a failure)")
	}
	body := []byte(`{"eventType":"milestone","meta":{"resourceId":"loan-1"}}`)
	var (
		mu      sync.Mutex
		bad     []string
		n       int
		headers http.Header
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		i := n
		if r.Method != http.MethodPost || !bytes.Equal(got, body) || r.URL.Path != "/pushback/bench/sync" {
			bad = append(bad, fmt.Sprintf("%s %s %q", r.Method, r.URL.Path, got))
		}
		headers = r.Header.Clone()
		mu.Unlock()
		// Every third answer each of 200, 401 and 503.
		w.WriteHeader([]int{http.StatusOK, http.StatusUnauthorized, http.StatusServiceUnavailable}[i%3])
	}))
	defer srv.Close()

	tests := []struct {
		name    string
		threads int
		conns   int
	}{
		{"one thread counts every answer", 1, 2},
		{"two threads' counts are summed in done()", 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := newWrk(t.TempDir(), tt.threads)
			if err != nil {
				t.Fatal(err)
			}
			if w.bin != bin {
				t.Fatalf("wrk at %s, want %s", w.bin, bin)
			}
			h := http.Header{}
			h.Set("Content-Type", "application/json")
			h.Set(sigHeader, "c2lnbmF0dXJl+/==")
			res, err := w.attack(target{URL: srv.URL + "/pushback/bench/sync", Header: h, Body: body, Expect: 401, Expect2: 503}, tt.conns, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bad) > 0 {
				t.Fatalf("%d requests were not the bench's POST, e.g. %s", len(bad), bad[0])
			}
			if headers.Get(sigHeader) != "c2lnbmF0dXJl+/==" || headers.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", headers)
			}
			if res.Requests < 100 {
				t.Fatalf("%d requests in a second", res.Requests)
			}
			for _, c := range []int{200, 401, 503} {
				if share := float64(res.Codes[c]) / float64(res.Requests); share < 0.3 || share > 0.37 {
					t.Errorf("code %d: %d of %d answers, want about a third", c, res.Codes[c], res.Requests)
				}
			}
			if res.OK != res.Codes[401]+res.Codes[503] || res.Failed() != res.Codes[200] {
				t.Errorf("OK %d, failed %d, codes %v", res.OK, res.Failed(), res.Codes)
			}
			if p50 := res.Quantile(0.5); p50 <= 0 || p50 > time.Second {
				t.Errorf("p50 %v", p50)
			}
			if res.clientCPU <= 0 {
				t.Errorf("wrk's CPU time not recorded")
			}
			n = 0
		})
	}
}
