package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbackd/pushbackd/security"
)

func signature(secret, body []byte) string {
	return security.SignatureValue(secret, body, "base64", "")
}

// request builds the scenario request against addr (host:port) for the bench partner's
// endpoint; both servers get the same path, headers and body.
func (b *bench) request(addr, endpoint string, goodSig bool, expect int) target {
	sig := b.badSig
	if goodSig {
		sig = b.goodSig
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(sigHeader, sig)
	return target{URL: "http://" + addr + "/pushback/bench/" + endpoint, Header: h, Body: b.body, Expect: expect}
}

// jwtKeys makes the jwt endpoint's key pair (its public half as PEM) and another key,
// which the endpoint does not hold.
func jwtKeys() (pub string, other *ecdsa.PrivateKey, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", nil, err
	}
	other, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), other, nil
}

// rejectionHeader is what scenarios 1j, 1e and 1s send: a credential that cannot pass.
// 1j, a well-formed ES256 token with the right claims, signed by a key the endpoint does
// not hold (the honest case: only the signature check refuses it); 1e, the same token
// expired (refused on its exp, before any signature check); 1s, an AWS SigV4 request
// signed with a wrong secret. The SigV4 request is signed now and passes its X-Amz-Date
// check for the 5-minute tolerance, more than one scenario takes with the default flags.
func (b *bench) rejectionHeader(variant, addr string) (http.Header, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	now := time.Now()
	switch variant {
	case "j", "e":
		exp := now.Add(time.Hour)
		if variant == "e" {
			exp = now.Add(-time.Hour)
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{Issuer: jwtIssuer, Audience: jwt.ClaimStrings{jwtAudience},
			IssuedAt: jwt.NewNumericDate(now.Add(-2 * time.Hour)), ExpiresAt: jwt.NewNumericDate(exp)}).SignedString(b.jwtOther)
		if err != nil {
			return nil, err
		}
		h.Set("Authorization", "Bearer "+tok)
	case "s":
		u := &url.URL{Scheme: "http", Host: addr, Path: "/pushback/bench/" + sigv4Endpoint}
		sc := security.Config{Method: security.AWSSigV4, Region: sigv4Region, Service: sigv4Service,
			Secrets: []security.Secret{security.NewSecret("not-the-secret-access-key")}, SecretIDs: []string{sigv4KeyID}}
		sh, _, err := security.SignFor(sc, u, b.body, "", now)
		if err != nil {
			return nil, err
		}
		for k, v := range sh {
			h[k] = v
		}
	}
	return h, nil
}

// startBase starts pushbackd on a fresh copy of the one-partner bench config.
func (b *bench) startBase(name string, c cfg) (*pushbackd, error) {
	if c.MockURL == "" {
		c.MockURL = b.mockURL
	}
	c.JWTPublicPEM = b.jwtPub
	if err := c.write(filepath.Join(b.tmp, name)); err != nil {
		return nil, err
	}
	pb, err := b.startPushbackd(name, &c)
	if err != nil {
		return nil, err
	}
	if b.idleRSS == 0 && c.ScalePartners == 0 {
		time.Sleep(2 * time.Second)
		_, b.idleRSS = pb.mem()
		b.add(row{scenario: "memory: idle RSS (one-partner config)", peakRSS: b.idleRSS, target: "≤ 40 MB",
			holds: holds(b.idleRSS <= 40<<20, "%s", fmtMB(b.idleRSS)), by: "/proc"})
		b.note("idle RSS measured 2 s after /readyz on a fresh start; start→ready %v", pb.readyIn.Round(time.Millisecond))
	}
	return pb, nil
}

// scenarioCompare runs scenarios 1-3: the same request to the bare handler and to
// pushbackd, alternating. Variant "b" is the same scenario under the default limits:
// 1b with limits.auth_failures on (the bench's one address is soon answered 429), 3b with
// the default limits.queue (10000: once full, accepts answer 503).
func (b *bench) scenarioCompare(n int, variant string) error {
	c := cfg{}
	var name, ep, tgt string
	good, expect, expect2, min := true, http.StatusOK, 0, 0.0
	switch n + map[string]int{"": 0, "b": 10, "j": 20, "e": 30, "s": 40}[variant] {
	case 1:
		// The 401 path itself: with limits.auth_failures on, a one-address flood of bad
		// signatures is answered 429 after 20 tries (1b).
		c.AuthFailuresOff = true
		name, ep, good, expect, min, tgt = "1 rejected (bad signature, 401; auth_failures limiter off)", "sync", false, http.StatusUnauthorized, 0.85, "ratio ≥ 0.85"
	case 11:
		name, ep, good, expect, expect2, min, tgt = "1b rejected, default auth_failures limiter (401 then 429)", "sync", false, http.StatusUnauthorized, http.StatusTooManyRequests, 0.85, "ratio ≥ 0.85"
	case 21, 31, 41:
		// Issue 16's methods: the same 401 on a jwt and an aws_sigv4 endpoint.
		c.AuthFailuresOff = true
		name = map[string]string{
			"j": "1j rejected on a jwt endpoint (ES256 token of another key, 401; limiter off)",
			"e": "1e rejected on a jwt endpoint (expired token, 401; limiter off)",
			"s": "1s rejected on an aws_sigv4 endpoint (signed with a wrong secret, 401; limiter off)",
		}[variant]
		ep, good, expect, min, tgt = map[string]string{"j": jwtEndpoint, "e": jwtEndpoint, "s": sigv4Endpoint}[variant], false, http.StatusUnauthorized, 0.80, "ratio ≥ 0.80"
	case 2:
		name, ep, min, tgt = "2 sync, signature, 3-step pure saga", "sync", 0.25, "ratio ≥ 0.25"
	case 3:
		// A queue that outlasts the measured window, so every answer is an accept, not
		// the queue-full 503 (3b).
		c.Queue = 1_000_000
		name, ep, min, tgt = "3 async durable accept (2xx after fsync; limits.queue 1,000,000)", "async", 0.30, "ratio ≥ 0.30, p99 ≤ 20 ms, peak RSS ≤ 200 MB"
	case 13:
		name, ep, min, tgt = "3b async accept, default limits.queue 10000 (503 once full)", "async", 0.30, "ratio ≥ 0.30, p99 ≤ 20 ms, peak RSS ≤ 200 MB"
	default:
		return fmt.Errorf("no scenario %d%s", n, variant)
	}
	label := fmt.Sprintf("scenario %d%s", n, variant)
	pb, err := b.startBase(fmt.Sprintf("s%d%s", n, variant), c)
	if err != nil {
		return err
	}
	defer b.stopPB(pb)
	t := b.request(pb.addr, ep, good, expect)
	t.Expect2 = expect2
	bt := b.request(b.bareAddr, ep, good, http.StatusOK)
	if n == 1 && variant != "" && variant != "b" {
		h, err := b.rejectionHeader(variant, pb.addr)
		if err != nil {
			return err
		}
		t.Header, bt.Header = h, h
	}
	sides := []side{
		{"bare", bt, b.bare},
		{"pushbackd", t, pb.proc},
	}
	res, err := b.compare(sides...)
	if err != nil {
		return err
	}
	b.cpuNote(label, sides, res)
	bare, p := res[0], res[1]
	peak, _ := pb.mem()
	ratio := p.RPS() / bare.RPS()
	ok := ratio >= min
	detail := fmt.Sprintf("%.2f vs %.2f", ratio, min)
	switch {
	case n == 3:
		p99 := p.Quantile(0.99)
		ok = ok && p99 <= 20*time.Millisecond && peak <= 200<<20
		detail = fmt.Sprintf("ratio %.2f, p99 %s, RSS %s", ratio, fmtMs(p99), fmtMB(peak))
	case n == 1 && variant == "b":
		detail = fmt.Sprintf("%.2f; %d×401, %d×429", ratio, p.Codes[401], p.Codes[429])
	}
	b.add(row{scenario: name, pbRPS: p.RPS(), bareRS: bare.RPS(), ratio: ratio, p50: p.Quantile(0.5), p99: p.Quantile(0.99),
		errors: errString(p, expect, expect2), peakRSS: peak, peakAnon: pb.anonPeak.Load(), target: tgt, holds: holds(ok, "%s", detail)})
	bp, _ := b.bare.mem()
	b.note("%s: ratio per round %s; bare p50 %s p99 %s, bare errors %s, bare peak RSS %s", label, roundRatios(p, bare), fmtMs(bare.Quantile(0.5)), fmtMs(bare.Quantile(0.99)), errString(bare, http.StatusOK), fmtMB(bp))
	b.storeNote(label, pb, p.OK)
	if n == 3 {
		depth, _ := pb.metric("pushbackd_queue_depth")
		b.note("%s: queue depth right after the load: %.0f (limits.queue %d)", label, depth, cmp.Or(c.Queue, 10000))
	}
	return nil
}

// scenarioE2E is scenario 4: async accepts whose saga makes one http call to the mock,
// sustained; runs completed per second from pushbackd_runs_total, queue depth sampled
// every second from /metrics.
func (b *bench) scenarioE2E() error {
	const queue = 10000
	pb, err := b.startBase("s4", cfg{Queue: queue})
	if err != nil {
		return err
	}
	defer b.stopPB(pb)
	bareT := b.request(b.bareAddr, "e2e", true, http.StatusOK)
	pbT := b.request(pb.addr, "e2e", true, http.StatusOK)
	res, err := b.compare(side{"bare", bareT, b.bare})
	if err != nil {
		return err
	}
	bare := res[0]
	if _, err := b.attack(pbT, b.o.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(2 * time.Second) // let the warm-up's runs drain

	succeeded := func() float64 {
		v, _ := pb.metric("pushbackd_runs_total", `saga="bench-e2e"`, `status="succeeded"`)
		return v
	}
	done0 := succeeded()
	pbCPU0, mockCPU0 := pb.cpu(), b.mock.cpu()
	gcs0, gcErr := pb.metric("go_gc_duration_seconds_count")
	every := sampleEverySecond(func() (float64, float64, error) {
		d, err := pb.metric("pushbackd_queue_depth")
		return d, succeeded(), err
	})
	start := time.Now()
	p, err := b.attack(pbT, b.o.e2eDuration)
	elapsed := time.Since(start)
	done1 := succeeded()
	pbCPU, mockCPU := pb.cpu()-pbCPU0, b.mock.cpu()-mockCPU0
	depths, dones := every.stop()
	if err != nil {
		return err
	}
	peak, _ := pb.mem()
	// The bare handler again, after the sustained run: its ratio is against bare rounds on
	// both sides of it, so a host that drifts over the minute moves both figures alike
	// rather than the ratio.
	after, err := b.compare(side{"bare", bareT, b.bare})
	if err != nil {
		return err
	}
	bareBefore, bareAfter := bare.RPS(), after[0].RPS()
	bare.merge(after[0])

	completed := (done1 - done0) / elapsed.Seconds()
	ratio := completed / bare.RPS()
	maxDepth := slices.Max(append([]float64{0}, depths...))
	endDepth := 0.0
	if len(depths) > 0 {
		endDepth = depths[len(depths)-1]
	}
	// Bounded: no 503 (queue full), the queue never reached limits.queue, and it is not
	// growing: the last quarter's highest depth is at most twice the first half's + 256.
	half, quarter := len(depths)/2, len(depths)*3/4
	firstMax, lastMax := 0.0, 0.0
	if len(depths) >= 4 {
		firstMax = slices.Max(depths[:half])
		lastMax = slices.Max(depths[quarter:])
	}
	bounded := p.Codes[http.StatusServiceUnavailable] == 0 && maxDepth < queue && lastMax <= 2*firstMax+256
	b.add(row{scenario: fmt.Sprintf("4 async end to end, http step to mock, %v sustained (runs completed/s)", b.o.e2eDuration),
		pbRPS: completed, bareRS: bare.RPS(), ratio: ratio, p50: p.Quantile(0.5), p99: p.Quantile(0.99),
		errors: errString(p, http.StatusOK), peakRSS: peak, peakAnon: pb.anonPeak.Load(), target: "ratio ≥ 0.15, queue bounded",
		holds: holds(ratio >= 0.15 && bounded, "%.2f; queue max %.0f, end %.0f", ratio, maxDepth, endDepth),
		by:    "runs/s: pushbackd_runs_total; bare req/s (rounds before and after), p50, p99 (of the accepts): wrk"})
	b.note("scenario 4: accepted %.0f/s, completed %.0f/s over %v; queue depth per second: %v", p.RPS(), completed, elapsed.Round(time.Millisecond), depths)
	b.note("scenario 4: runs completed per second, averaged over each 10 s: %v", perTenSeconds(done0, dones))
	b.note("scenario 4: the bare handler answered %.0f req/s in its rounds before the sustained run and %.0f in those after; the ratio is against all of them (%.0f)",
		bareBefore, bareAfter, bare.RPS())
	// How often pushbackd's collector ran, and with what heap: what its soft memory limit
	// costs when many connections make the live heap large.
	if gcs1, err := pb.metric("go_gc_duration_seconds_count"); gcErr == nil && err == nil {
		heap, _ := pb.metric("go_memstats_heap_alloc_bytes")
		stacks, _ := pb.metric("go_memstats_stack_inuse_bytes")
		sys, _ := pb.metric("go_memstats_sys_bytes")
		b.note("scenario 4: pushbackd's collector ran %.1f times a second; at the end, heap allocated %.0f MB, goroutine stacks %.0f MB, all the runtime holds %.0f MB",
			(gcs1-gcs0)/elapsed.Seconds(), heap/(1<<20), stacks/(1<<20), sys/(1<<20))
	}
	if n := done1 - done0; n > 0 {
		wrk := 0.0
		if p.Requests > 0 {
			wrk = float64(p.clientCPU.Microseconds()) / float64(p.Requests)
		}
		b.note("scenario 4: CPU per completed run: pushbackd %.0f µs, the mock %.0f µs; wrk %.1f µs per answer",
			float64(pbCPU.Microseconds())/n, float64(mockCPU.Microseconds())/n, wrk)
	}
	b.storeNote("scenario 4", pb, p.OK)
	return nil
}

// scenarioRouting is scenario 5: a config with o.partners partners × 5 sites × 5
// endpoints beside the bench partner; its load and memory, and scenario 2's request run
// against it and against the one-partner config, alternating bare / one-partner / scale.
func (b *bench) scenarioRouting() error {
	base, err := b.startBase("s5-base", cfg{AuthFailuresOff: true})
	if err != nil {
		return err
	}
	defer b.stopPB(base)

	sc := cfg{ScalePartners: b.o.partners, MockURL: b.mockURL, AuthFailuresOff: true}
	dir := filepath.Join(b.tmp, "s5-scale")
	t0 := time.Now()
	if err := sc.write(dir); err != nil {
		return err
	}
	gen := time.Since(t0)
	var yamlBytes int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			yamlBytes += fi.Size()
		}
		return nil
	})
	t0 = time.Now()
	if out, err := runCmd(b.bin, "validate", "-config", sc.file); err != nil {
		return fmt.Errorf("validate scale config: %v\n%s", err, out)
	}
	validate := time.Since(t0)
	scale, err := b.startPushbackd("s5-scale", &sc)
	if err != nil {
		return err
	}
	defer b.stopPB(scale)
	time.Sleep(2 * time.Second)
	_, idle := scale.mem()
	_, baseIdle := base.mem()
	endpoints := b.o.partners * 25
	b.add(row{scenario: fmt.Sprintf("5 routing scale: load %d partners × 5 sites × 5 endpoints (%d endpoints)", b.o.partners, endpoints),
		peakRSS: idle, peakAnon: scale.anon(), target: "load ≤ 2 s",
		holds: holds(scale.readyIn <= 2*time.Second, "start→ready %.2f s; validate %.2f s; idle RSS %s vs %s one-partner", scale.readyIn.Seconds(), validate.Seconds(), fmtMB(idle), fmtMB(baseIdle)),
		by:    "start→/readyz polled by the bench; RSS: /proc"})
	b.note("scenario 5: generated %d partner files (%.1f MB of YAML) in %v; `pushbackd validate` took %v (process start included); serve start→/readyz %v",
		b.o.partners, float64(yamlBytes)/(1<<20), gen.Round(time.Millisecond), validate.Round(time.Millisecond), scale.readyIn.Round(time.Millisecond))

	// Scenario 2's request (disk-bound: four commits per request), then scenario 1's
	// (CPU-bound: routing, body read, HMAC, 401), each alternating bare / one-partner /
	// scale. Server CPU per request is the steadier figure on a shared machine.
	for _, good := range []bool{true, false} {
		expect, label := http.StatusOK, "scenario 2's sync saga"
		if !good {
			expect, label = http.StatusUnauthorized, "scenario 1's rejection (401)"
		}
		fmt.Printf("  -- %s\n", label)
		sides := []side{
			{"bare", b.request(b.bareAddr, "sync", good, http.StatusOK), b.bare},
			{"one-partner", b.request(base.addr, "sync", good, expect), base.proc},
			{"scale", b.request(scale.addr, "sync", good, expect), scale.proc},
		}
		res, err := b.compare(sides...)
		if err != nil {
			return err
		}
		b.cpuNote("scenario 5, "+label, sides, res)
		bare, one, big := res[0], res[1], res[2]
		peak, _ := scale.mem()
		rOne, rBig := one.RPS()/bare.RPS(), big.RPS()/bare.RPS()
		rel := rBig / rOne
		cpuOne := float64(one.serverCPU.Microseconds()) / float64(max(one.OK, 1))
		cpuBig := float64(big.serverCPU.Microseconds()) / float64(max(big.OK, 1))
		b.add(row{scenario: "5 routing scale: " + label + " on the scale config", pbRPS: big.RPS(), bareRS: bare.RPS(), ratio: rBig,
			p50: big.Quantile(0.5), p99: big.Quantile(0.99), errors: errString(big, expect), peakRSS: peak, peakAnon: scale.anonPeak.Load(),
			target: "≥ 0.95 × one-partner ratio", holds: holds(rel >= 0.95, "%.3f / %.3f = %.2f; CPU/request %.0f vs %.0f µs", rBig, rOne, rel, cpuBig, cpuOne)})
		b.note("scenario 5, %s: one-partner config in the same rounds: %.0f req/s, ratio %.3f, p50 %s, p99 %s", label, one.RPS(), rOne, fmtMs(one.Quantile(0.5)), fmtMs(one.Quantile(0.99)))
	}
	return nil
}

func runCmd(name string, args ...string) ([]byte, error) {
	return execCommand(name, args...).CombinedOutput()
}

// listing times GET /admin/v1/runs?<query> n times, sequentially.
func listing(pb *pushbackd, query string, n int) (p50, p99 time.Duration, count int, err error) {
	d := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		code, body, err := pb.adminGet(context.Background(), "/admin/v1/runs?"+query)
		d = append(d, time.Since(t0))
		if err != nil {
			return 0, 0, 0, err
		}
		if code != http.StatusOK {
			return 0, 0, 0, fmt.Errorf("GET /admin/v1/runs?%s: %d %s", query, code, body)
		}
		if i == 0 {
			count = countRuns(body)
		}
	}
	slices.Sort(d)
	return d[n/2], d[n*99/100], count, nil
}

func countRuns(body []byte) int {
	var v struct {
		Runs []json.RawMessage `json:"runs"`
	}
	if json.Unmarshal(body, &v) == nil && v.Runs != nil {
		return len(v.Runs)
	}
	var arr []json.RawMessage
	if json.Unmarshal(body, &arr) == nil {
		return len(arr)
	}
	return -1
}

// oldestRun is the id of the oldest stored run.
func oldestRun(pb *pushbackd) string {
	_, body, err := pb.adminGet(context.Background(), "/admin/v1/runs?order=oldest&limit=1")
	if err != nil {
		return "?"
	}
	var v struct {
		Runs []struct {
			ID string `json:"id"`
		} `json:"runs"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Runs) == 0 {
		return "?"
	}
	return v.Runs[0].ID
}

// storeNote reports the store's commit waits from /metrics (pushbackd_store_commit_seconds):
// how many writes each answered request cost and how long each waited for its commit.
func (b *bench) storeNote(label string, pb *pushbackd, answered int) {
	parts := ""
	for _, op := range []string{"create", "update"} {
		sum, _ := pb.metric("pushbackd_store_commit_seconds_sum", `op="`+op+`"`)
		cnt, _ := pb.metric("pushbackd_store_commit_seconds_count", `op="`+op+`"`)
		if cnt == 0 {
			continue
		}
		parts += fmt.Sprintf("; %s: %.0f writes, mean wait %s", op, cnt, fmtMs(time.Duration(sum/cnt*float64(time.Second))))
	}
	if parts != "" {
		b.note("%s: store commits since start (warm-up included)%s; %d answered in the measured rounds", label, parts, answered)
	}
}

// secondSampler reads two figures once a second until stopped.
type secondSampler struct {
	quit         chan struct{}
	done         chan struct{}
	first, other []float64
}

// sampleEverySecond calls read once a second, from a goroutine, until stop, and keeps what
// it read without an error; end-to-end scenarios read the queue depth and the completed
// runs with it.
func sampleEverySecond(read func() (float64, float64, error)) *secondSampler {
	s := &secondSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				if a, b, err := read(); err == nil {
					s.first, s.other = append(s.first, a), append(s.other, b)
				}
			}
		}
	}()
	return s
}

// stop ends the sampling and returns both figures' samples.
func (s *secondSampler) stop() (first, other []float64) {
	close(s.quit)
	<-s.done
	return s.first, s.other
}

// perTenSeconds turns counts sampled once a second, starting from base, into the mean rate
// of each 10 s: whether a sustained run slows as its data file grows.
func perTenSeconds(base float64, samples []float64) []float64 {
	var rates []float64
	prev := base
	for i := 9; i < len(samples); i += 10 {
		rates = append(rates, math.Round((samples[i]-prev)/10))
		prev = samples[i]
	}
	return rates
}
