package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushbackd/pushbackd/internal/pgtest"
)

// pgSettings make the throwaway cluster as durable as bbolt's fsync'd commits: pgtest's
// defaults (fsync, synchronous_commit and full_page_writes off) suit tests, not a
// comparison of durable accepts.
var pgSettings = []string{"fsync=on", "synchronous_commit=on", "full_page_writes=on"}

// pgLogSettings (-pg-log) make the cluster log what can stall a store's writes: it found
// the deadlock between lease renewal and the save batch (BENCHMARKS, after midnight on
// 2026-11-28). The collector writes the log under the data directory, which Stop deletes,
// so the bench copies it out first.
var pgLogSettings = []string{"logging_collector=on", "log_min_duration_statement=100",
	"log_checkpoints=on", "log_autovacuum_min_duration=0", "log_lock_waits=on"}

// scenarioPostgres is scenario 8: the store on Postgres, on a throwaway durable cluster
// (internal/pgtest: initdb in a temp dir, unix socket only). First scenario 3's request
// (async durable accept) alternating bare / bbolt / postgres in the same rounds; then
// scenario 4's end to end (runs completed per second, from pushbackd_runs_total) with one
// instance and with two instances sharing the database, each with the Postgres server's
// CPU per run beside pushbackd's.
func (b *bench) scenarioPostgres() error {
	settings := pgSettings
	if b.o.pgLog != "" {
		settings = append(slices.Clip(settings), pgLogSettings...)
	}
	cl, err := pgtest.Start(settings...)
	if err != nil {
		return fmt.Errorf("start a throwaway postgres cluster (install Debian's postgresql): %w", err)
	}
	defer cl.Stop()
	if b.o.pgLog != "" {
		defer func() { // before Stop deletes it, after the scenario's servers stopped
			if err := os.WriteFile(b.o.pgLog, cl.Log(), 0o600); err != nil {
				b.note("scenario 8: cannot write Postgres's log: %v", err)
				return
			}
			b.note("scenario 8: Postgres's log is in %s", b.o.pgLog)
		}()
	}
	dbCPU := func() time.Duration { return treeCPU(cl.PID()) }
	token := randomToken()
	newDB := func(name string) (cfg, error) {
		dsn, err := cl.CreateDatabase(name, "")
		return cfg{PostgresDSN: dsn, AdminToken: token}, err
	}

	// Accept: the same request, bare / bbolt / postgres, alternating.
	bolt, err := b.startBase("s8-bbolt", cfg{Queue: 1_000_000})
	if err != nil {
		return err
	}
	defer b.stopPB(bolt)
	pc, err := newDB("s8_accept")
	if err != nil {
		return err
	}
	pc.Queue = 1_000_000
	pg, err := b.startBase("s8-postgres", pc)
	if err != nil {
		return err
	}
	defer b.stopPB(pg)
	pg.dbCPU = dbCPU
	sides := []side{
		{"bare", b.request(b.bareAddr, "async", true, http.StatusOK), b.bare},
		{"bbolt", b.request(bolt.addr, "async", true, http.StatusOK), bolt.proc},
		{"postgres", b.request(pg.addr, "async", true, http.StatusOK), pg.proc},
	}
	res, err := b.compare(sides...)
	if err != nil {
		return err
	}
	b.cpuNote("scenario 8 accept", sides, res)
	bare, rb, rp := res[0], res[1], res[2]
	rel := rp.RPS() / rb.RPS()
	peak, _ := pg.mem()
	b.add(row{scenario: "8 async durable accept on Postgres (fsync, synchronous_commit, full_page_writes on; limits.queue 1,000,000)",
		pbRPS: rp.RPS(), bareRS: bare.RPS(), ratio: rp.RPS() / bare.RPS(), p50: rp.Quantile(0.5), p99: rp.Quantile(0.99),
		errors: errString(rp, http.StatusOK), peakRSS: peak, peakAnon: pg.anonPeak.Load(), target: "≥ 0.5 × bbolt's req/s, same rounds",
		holds: holds(rel >= 0.5, "%.0f / %.0f = %.2f of bbolt", rp.RPS(), rb.RPS(), rel), by: "wrk; CPU: /proc"})
	b.note("scenario 8 accept: bbolt in the same rounds %.0f req/s (ratio %.3f, p50 %s, p99 %s); postgres per round %s, bbolt per round %s (ratios to bare)",
		rb.RPS(), rb.RPS()/bare.RPS(), fmtMs(rb.Quantile(0.5)), fmtMs(rb.Quantile(0.99)), roundRatios(rp, bare), roundRatios(rb, bare))
	b.note("scenario 8 accept: CPU per accept: pushbackd on bbolt %s; pushbackd on postgres %s + postgres server %s",
		perOp(rb.serverCPU, rb.OK), perOp(rp.serverCPU, rp.OK), perOp(rp.dbCPU, rp.OK))
	b.storeNote("scenario 8 accept (postgres)", pg, rp.OK)
	b.stopPB(bolt)
	b.stopPB(pg)

	// End to end, one instance then two on one database; wrk's connections are split
	// between the instances, so the offered load is the same.
	for _, n := range []int{1, 2} {
		if err := b.pgE2E(n, bare.RPS(), newDB, dbCPU); err != nil {
			return err
		}
	}
	return nil
}

// pgE2E runs scenario 4's request for o.e2eDuration against n instances sharing one
// fresh database, one wrk process per instance (o.conns split between them), at once.
func (b *bench) pgE2E(n int, bareRPS float64, newDB func(string) (cfg, error), dbCPU func() time.Duration) error {
	base, err := newDB(fmt.Sprintf("s8_e2e%d", n))
	if err != nil {
		return err
	}
	pbs := make([]*pushbackd, n)
	for i := range pbs {
		c := base
		c.Queue = 10000
		if pbs[i], err = b.startBase(fmt.Sprintf("s8-e2e%d-%d", n, i), c); err != nil {
			return err
		}
		defer b.stopPB(pbs[i])
	}
	conns := b.o.conns / n
	if conns < 1 || conns%max(1, min(b.o.wrkThreads, conns)) != 0 {
		return fmt.Errorf("-conns %d does not split into %d instances", b.o.conns, n)
	}
	attackAll := func(d time.Duration) ([]*loadResult, error) {
		out := make([]*loadResult, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, pb := range pbs {
			w := *b.wrk
			w.dir = filepath.Join(b.wrk.dir, fmt.Sprintf("wrk-%d-%d", n, i)) // body files of their own
			if err := os.MkdirAll(w.dir, 0o755); err != nil {
				return nil, err
			}
			wg.Go(func() { out[i], errs[i] = w.attack(b.request(pb.addr, "e2e", true, http.StatusOK), conns, d) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if _, err := attackAll(b.o.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(2 * time.Second) // let the warm-up's runs drain
	succeeded := func() (done float64) {
		for _, pb := range pbs {
			v, _ := pb.metric("pushbackd_runs_total", `saga="bench-e2e"`, `status="succeeded"`)
			done += v
		}
		return done
	}
	sample := func() (done float64, cpu time.Duration) {
		for _, pb := range pbs {
			cpu += pb.cpu()
		}
		return succeeded(), cpu
	}
	done0, cpu0 := sample()
	db0 := dbCPU()
	every := sampleEverySecond(func() (float64, float64, error) {
		depth := 0.0
		for _, pb := range pbs {
			d, err := pb.metric("pushbackd_queue_depth")
			if err != nil {
				return 0, 0, err
			}
			depth += d
		}
		return depth, succeeded(), nil
	})
	start := time.Now()
	res, err := attackAll(b.o.e2eDuration)
	elapsed := time.Since(start)
	done1, cpu1 := sample()
	db := dbCPU() - db0
	depths, dones := every.stop()
	if err != nil {
		return err
	}
	all := &loadResult{}
	for _, r := range res {
		all.merge(r)
	}
	all.Elapsed = elapsed // the attacks ran at once: their lengths do not add up
	runs := done1 - done0
	completed := runs / elapsed.Seconds()
	var peak uint64
	depth := 0.0
	for _, pb := range pbs {
		p, _ := pb.mem()
		peak = max(peak, p)
		d, _ := pb.metric("pushbackd_queue_depth")
		depth += d
	}
	per := func(d time.Duration) string { return perOp(d, int(runs)) }
	name := "8 end to end on Postgres, one instance (runs completed/s)"
	if n == 2 {
		name = "8 end to end on Postgres, two instances on one database, wrk split between them (runs completed/s, both)"
	}
	b.add(row{scenario: name, pbRPS: completed, bareRS: bareRPS, ratio: completed / bareRPS, p50: all.Quantile(0.5), p99: all.Quantile(0.99),
		errors: errString(all, http.StatusOK), peakRSS: peak, target: "(reported: CPU per run)",
		holds: fmt.Sprintf("CPU/run: pushbackd %s + postgres %s", per(cpu1-cpu0), per(db)),
		by:    "runs/s: pushbackd_runs_total (summed); bare req/s: the accept rounds above; p50, p99 (of the accepts): wrk; CPU: /proc"})
	b.note("scenario 8 end to end, %d instance(s): accepted %.0f/s, completed %.0f/s over %v (%d connections each); server CPU per completed run: pushbackd %s (all instances), postgres %s; queue depth at the end %.0f; load average %s",
		n, all.RPS(), completed, elapsed.Round(time.Millisecond), conns, per(cpu1-cpu0), per(db), depth, loadavg())
	b.note("scenario 8 end to end, %d instance(s): queue depth per second (all instances): %v; runs completed per second, averaged over each 10 s: %v",
		n, depths, perTenSeconds(done0, dones))
	return nil
}

// perOp formats CPU time per operation in µs.
func perOp(d time.Duration, n int) string {
	if n <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(d.Microseconds())/float64(n))
}

// treeCPU is the CPU time of process pid and all its descendants, live or exited: its own
// user+system time, the time of the children it has waited for (cutime, cstime), and each
// live child's tree. Postgres runs a backend process per connection under the postmaster
// (itself under runuser when the bench runs as root), so the server's cost is the tree's.
func treeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	total := time.Duration(ticks) * time.Second / 100 // USER_HZ
	// Children of every thread: the postmaster is single-threaded, runuser too.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for k := range strings.FieldsSeq(string(kids)) {
			if c, err := strconv.Atoi(k); err == nil {
				total += treeCPU(c)
			}
		}
	}
	return total
}

func randomToken() string {
	var k [32]byte
	_, _ = rand.Read(k[:])
	return hex.EncodeToString(k[:])
}
