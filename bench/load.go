package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// target is one request the load generator repeats.
type target struct {
	URL     string
	Header  http.Header
	Body    []byte
	Expect  int // the status code that counts as success
	Expect2 int // another one, when not 0
}

// loadResult is what one closed-loop attack (or several rounds, merged) measured.
type loadResult struct {
	Requests int            // responses received (any code) plus socket errors
	OK       int            // responses with the expected code
	Codes    map[int]int    // status code -> count (0 = socket error)
	Errors   map[string]int // socket errors by kind (connect, read, write, timeout)
	Elapsed  time.Duration
	// serverCPU is the server process's CPU time during the attack, when known;
	// clientCPU is the load generator's.
	serverCPU, clientCPU time.Duration
	// dbCPU is the database server's CPU time during the attack (scenario 8's Postgres).
	dbCPU time.Duration
	// roundRPS is each merged round's RPS, in order.
	roundRPS []float64
	// lat is the latency distribution of every answer (any code) as wrk's histogram
	// reported it: masses at percentile grid points, so rounds merge by concatenation.
	lat []latMass
}

// latMass is a number of answers (w) at a latency (v).
type latMass struct {
	v time.Duration
	w float64
}

func (r *loadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

func (r *loadResult) Failed() int { return r.Requests - r.OK }

// merge folds another round's result into r.
func (r *loadResult) merge(o *loadResult) {
	if r.Codes == nil {
		r.Codes, r.Errors = map[int]int{}, map[string]int{}
	}
	r.Requests += o.Requests
	r.OK += o.OK
	r.Elapsed += o.Elapsed
	r.serverCPU += o.serverCPU
	r.clientCPU += o.clientCPU
	r.dbCPU += o.dbCPU
	if len(o.roundRPS) > 0 {
		r.roundRPS = append(r.roundRPS, o.roundRPS...)
	} else {
		r.roundRPS = append(r.roundRPS, o.RPS())
	}
	r.lat = append(r.lat, o.lat...)
	for k, v := range o.Codes {
		r.Codes[k] += v
	}
	for k, v := range o.Errors {
		r.Errors[k] += v
	}
}

// Quantile is the latency below which a fraction q of the answers fell (0 when none).
// The 50th and 99th percentiles are grid points, so for one attack they are wrk's own.
func (r *loadResult) Quantile(q float64) time.Duration { return quantile(r.lat, q) }

// quantile of a distribution given as masses: the smallest latency at which the masses
// at or below it reach q of the total.
func quantile(lat []latMass, q float64) time.Duration {
	total := 0.0
	for _, m := range lat {
		total += m.w
	}
	if total <= 0 {
		return 0
	}
	sorted := slices.SortedFunc(slices.Values(lat), func(a, b latMass) int { return int(a.v - b.v) })
	// The grid's masses are sums of floats: allow for their rounding at the boundary.
	want, sum := q*total*(1-1e-9), 0.0
	for _, m := range sorted {
		sum += m.w
		if sum >= want {
			return m.v
		}
	}
	return sorted[len(sorted)-1].v
}

// codesString summarises the unexpected answers, e.g. "503×12, socket-error×1".
func (r *loadResult) codesString(expect ...int) string {
	s := ""
	for _, c := range slices.Sorted(mapKeys(r.Codes)) {
		if slices.Contains(expect, c) {
			continue
		}
		if s != "" {
			s += ", "
		}
		if c == 0 {
			s += fmt.Sprintf("socket-error×%d", r.Codes[c])
		} else {
			s += fmt.Sprintf("%d×%d", c, r.Codes[c])
		}
	}
	return s
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// mustLoopback refuses any URL whose host is not 127.0.0.1: the bench never sends a
// request anywhere else.
func mustLoopback(raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() != "127.0.0.1" {
		panic(fmt.Sprintf("bench: refusing non-loopback target %q", raw))
	}
}
