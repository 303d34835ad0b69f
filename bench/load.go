package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// target is one request the load generator repeats.
type target struct {
	URL     string
	Header  http.Header
	Body    []byte
	Expect  int // the status code that counts as success
	Expect2 int // another one, when not 0
}

// loadResult is what one closed-loop attack measured.
type loadResult struct {
	Requests int            // responses received (any code) plus transport errors
	OK       int            // responses with the expected code
	Codes    map[int]int    // status code -> count (0 = transport error)
	Errors   map[string]int // transport errors by message
	Elapsed  time.Duration
	// serverCPU is the server process's CPU time during the attack, when known.
	serverCPU time.Duration
	lat       []time.Duration // latencies of the OK responses
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
	r.lat = append(r.lat, o.lat...)
	for k, v := range o.Codes {
		r.Codes[k] += v
	}
	for k, v := range o.Errors {
		r.Errors[k] += v
	}
}

// Quantile of the OK latencies (0 when none).
func (r *loadResult) Quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	if !slices.IsSorted(r.lat) {
		slices.Sort(r.lat)
	}
	i := int(q * float64(len(r.lat)-1))
	return r.lat[i]
}

// codesString summarises the unexpected answers, e.g. "503×12, conn-err×1".
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
			s += fmt.Sprintf("transport-error×%d", r.Codes[c])
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

// attack saturates t with conns concurrent closed-loop workers (each sends its next
// request when its previous answer arrived) for d.
func attack(t target, conns int, d time.Duration) *loadResult {
	mustLoopback(t.URL)
	atk := vegeta.NewAttacker(
		vegeta.Workers(uint64(conns)),
		vegeta.MaxWorkers(uint64(conns)),
		vegeta.Connections(conns),
		vegeta.MaxConnections(conns),
		vegeta.KeepAlive(true),
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.MaxBody(0), // read and discard answers; we only need the status
		vegeta.Timeout(30*time.Second),
	)
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodPost, URL: t.URL, Body: t.Body, Header: t.Header})
	res := &loadResult{Codes: map[int]int{}, Errors: map[string]int{}}
	res.lat = make([]time.Duration, 0, 1<<16)
	start := time.Now()
	// Rate{Freq: 0} is the unbounded pacer: with MaxWorkers = conns the attack is a
	// closed loop of conns workers.
	for r := range atk.Attack(tr, vegeta.Rate{Freq: 0}, d, "bench") {
		res.Requests++
		code := int(r.Code)
		res.Codes[code]++
		if code == 0 && r.Error != "" {
			res.Errors[r.Error]++
		}
		if code == t.Expect || (t.Expect2 != 0 && code == t.Expect2) {
			res.OK++
			res.lat = append(res.lat, r.Latency)
		}
	}
	res.Elapsed = time.Since(start)
	return res
}
