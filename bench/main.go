// Command bench is pushbackd's load benchmark: on loopback only, it starts a bare Echo v4
// handler (reads the body, answers 200) and pushbackd (the real binary, built here, with a
// generated bench config) as separate processes side by side, drives both with the same
// closed-loop load generator (wrk, its own process: 64 connections, a Lua script for the
// signed POST body), alternating bare/pushbackd over several rounds, and prints per
// scenario the throughput ratio pushbackd / bare, p50 and p99 latency, errors and peak
// RSS against the targets. wrk is installed from Debian's package when missing.
//
//	go run ./bench                       # everything (~10 minutes on 2 cores)
//	go run ./bench -quick                # a short smoke run
//	go run ./bench -scenarios 2,3 -out /tmp/table.md
//	go run ./bench -profile /tmp/prof -scenarios 2,3   # CPU profiles, server in-process
//
// Every URL the bench requests is asserted to be 127.0.0.1. See BENCHMARKS.md.
package main

import (
	"crypto/ecdsa"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type options struct {
	duration    time.Duration
	rounds      int
	conns       int
	scenarios   []int
	quick       bool
	out         string
	runs        int
	partners    int
	e2eDuration time.Duration
	warmup      time.Duration
	profile     string
	keep        bool
	wrkThreads  int
	pgLog       string
	// pushbackdEnv is added to the environment of the pushbackd processes only (not the
	// bare handler's or the mock's): A/B runs of a runtime setting such as GOMAXPROCS.
	pushbackdEnv []string
}

func main() {
	var (
		o         options
		scenarios string
		serve     string
		serveAddr string
	)
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of one measured round per server")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per scenario (bare, pushbackd, bare, pushbackd, ...)")
	flag.IntVar(&o.conns, "conns", 64, "concurrent connections (closed loop)")
	flag.IntVar(&o.wrkThreads, "wrk-threads", 2, "wrk threads (each an event loop; conns must divide evenly)")
	flag.StringVar(&scenarios, "scenarios", "1,2,3,4,5,6,7", "scenarios to run, comma-separated (7: accept during a bulk replay; 8: Postgres store, accept and end to end with one and two instances)")
	flag.BoolVar(&o.quick, "quick", false, "short smoke run: 1s rounds, 1 round, 10s end to end, 20k stored runs, 1,000 partners")
	flag.StringVar(&o.out, "out", "", "also write the table (markdown) to this file")
	flag.IntVar(&o.runs, "runs", 1_000_000, "scenario 6: stored runs to seed")
	flag.IntVar(&o.partners, "partners", 10_000, "scenario 5: partners (× 5 sites × 5 endpoints)")
	flag.DurationVar(&o.e2eDuration, "e2e-duration", 60*time.Second, "scenario 4: sustained load length")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load per server before each scenario")
	flag.StringVar(&o.profile, "profile", "", "write CPU profiles of the selected scenarios (1-4) to this directory, running pushbackd in-process, instead of the table")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs, data)")
	flag.StringVar(&o.pgLog, "pg-log", "", "scenario 8: have Postgres log checkpoints, autovacuum, lock waits, deadlocks and statements slower than 100 ms, and write its log to this file")
	flag.Func("pushbackd-env", "NAME=VALUE added to the pushbackd processes' environment only, not the bare handler's or the mock's (repeatable; not with -profile, which runs pushbackd in-process)", func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
			return fmt.Errorf("want NAME=VALUE, not %q", v)
		}
		o.pushbackdEnv = append(o.pushbackdEnv, v)
		return nil
	})
	flag.StringVar(&serve, "serve", "", "internal: run as the bare (bare) or mock (mock) server")
	flag.StringVar(&serveAddr, "serve-addr", "", "internal: address for -serve")
	flag.Parse()

	if serve != "" {
		if err := serveChild(serve, serveAddr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("duration", func() { o.duration = time.Second })
		def("rounds", func() { o.rounds = 1 })
		def("e2e-duration", func() { o.e2eDuration = 10 * time.Second })
		def("runs", func() { o.runs = 20_000 })
		def("partners", func() { o.partners = 1_000 })
		def("warmup", func() { o.warmup = 300 * time.Millisecond })
	}
	if o.conns < 1 || o.wrkThreads < 1 || o.conns%min(o.wrkThreads, o.conns) != 0 {
		fmt.Fprintf(os.Stderr, "bench: -conns %d must be at least 1 and divide evenly among -wrk-threads %d\n", o.conns, o.wrkThreads)
		os.Exit(2)
	}
	for s := range strings.SplitSeq(scenarios, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 8 {
			fmt.Fprintf(os.Stderr, "bench: bad scenario %q (1-8)\n", s)
			os.Exit(2)
		}
		o.scenarios = append(o.scenarios, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	tmp, err := os.MkdirTemp("", "pushbackd-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("temporary directory:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	b := &bench{o: o, tmp: tmp}
	if b.wrk, err = newWrk(tmp, o.wrkThreads); err != nil {
		return err
	}
	fmt.Println("load generator:", b.wrk.version, "at", b.wrk.bin)
	if err := b.setup(); err != nil {
		return err
	}
	defer b.teardown()
	if o.profile != "" {
		return b.profileAll()
	}
	for _, n := range o.scenarios {
		fmt.Printf("\n== scenario %d ==\n", n)
		var err error
		switch n {
		case 1, 3:
			variants := []string{"b"}
			if n == 1 {
				variants = append(variants, "j", "e", "s")
			}
			err = b.scenarioCompare(n, "")
			for _, v := range variants {
				if err != nil {
					break
				}
				fmt.Printf("\n== scenario %d%s ==\n", n, v)
				err = b.scenarioCompare(n, v)
			}
		case 2:
			err = b.scenarioCompare(2, "")
		case 4:
			err = b.scenarioE2E()
		case 5:
			err = b.scenarioRouting()
		case 6:
			err = b.scenarioHistory()
		case 7:
			err = b.scenarioReplay()
		case 8:
			err = b.scenarioPostgres()
		}
		if err != nil {
			return fmt.Errorf("scenario %d: %w", n, err)
		}
	}
	b.note("load average (1/5/15 min) at start %s, at end %s — the machine is shared; ratios come from alternating rounds in the same run", b.loadStart, loadavg())
	table := b.table()
	fmt.Println()
	fmt.Println(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			return err
		}
		fmt.Println("table written to", o.out)
	}
	return nil
}

// bench holds what every scenario shares.
type bench struct {
	o        options
	tmp      string
	bin      string // the pushbackd binary
	wrk      *wrk
	self     string // this program, re-executed for the bare and mock servers
	bare     *proc
	bareAddr string
	mock     *proc
	mockURL  string

	body            []byte
	goodSig, badSig string
	// jwtPub is the jwt endpoint's key (PEM); jwtOther signs the well-formed tokens of
	// another key that scenario 1j sends.
	jwtPub   string
	jwtOther *ecdsa.PrivateKey
	started  time.Time

	loadStart string
	rows      []row
	notes     []string
	idleRSS   uint64
}

func (b *bench) setup() error {
	b.started = time.Now()
	b.loadStart = loadavg()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if b.body, err = os.ReadFile(filepath.Join(root, "testdata/payloads/encompass-loan-milestone.json")); err != nil {
		return err
	}
	b.goodSig = signature([]byte(benchSecret), b.body)
	b.badSig = signature([]byte("not-the-key"), b.body)
	if b.jwtPub, b.jwtOther, err = jwtKeys(); err != nil {
		return err
	}

	b.bin = filepath.Join(b.tmp, "pushbackd")
	fmt.Println("building pushbackd …")
	build := exec.Command("go", "build", "-o", b.bin, "./cmd/pushbackd")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/pushbackd: %w", err)
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	b.bareAddr = freeAddr()
	if b.bare, err = startProc("bare", b.tmp, "http://"+b.bareAddr+"/healthz", nil, b.self, "-serve", "bare", "-serve-addr", b.bareAddr); err != nil {
		return err
	}
	mockAddr := freeAddr()
	b.mockURL = "http://" + mockAddr
	if b.mock, err = startProc("mock", b.tmp, b.mockURL+"/healthz", nil, b.self, "-serve", "mock", "-serve-addr", mockAddr); err != nil {
		return err
	}
	return nil
}

func (b *bench) teardown() {
	_ = b.bare.stop()
	_ = b.mock.stop()
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench from inside the pushbackd module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// row is one line of the final table.
type row struct {
	scenario      string
	pbRPS, bareRS float64 // 0: not applicable
	ratio         float64 // 0: not applicable
	p50, p99      time.Duration
	errors        string
	peakRSS       uint64
	peakAnon      uint64 // 0: not shown
	target        string
	holds         string
	// by says what measured the row's figures (wrk, the Go client, /metrics, /proc).
	by string
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }
func (b *bench) note(f string, a ...any) {
	s := fmt.Sprintf(f, a...)
	b.notes = append(b.notes, s)
	fmt.Println("  ·", s)
}

func holds(ok bool, detail string, a ...any) string {
	s := "**no**"
	if ok {
		s = "yes"
	}
	if detail != "" {
		s += " (" + fmt.Sprintf(detail, a...) + ")"
	}
	return s
}

func fmtRPS(v float64) string {
	if v == 0 {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmtMs(d)
}

func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}

func fmtMB(v uint64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MB", float64(v)/(1<<20))
}

// fmtMem shows VmHWM and, when known, the peak anonymous part (heap and stacks; the rest
// is mapped file pages, e.g. the bbolt file).
func fmtMem(hwm, anon uint64) string {
	if anon == 0 {
		return fmtMB(hwm)
	}
	return fmt.Sprintf("%s (anon %s)", fmtMB(hwm), fmtMB(anon))
}

func (b *bench) table() string {
	var s strings.Builder
	nproc := runtime.NumCPU()
	fmt.Fprintf(&s, "pushbackd bench — %s, %d CPUs, %s, %s; %s, %d threads, %d conns, %d round(s) × %v per server; started %s\n\n",
		runtime.GOOS+"/"+runtime.GOARCH, nproc, memTotal(), runtime.Version(), b.wrk.version, min(b.o.wrkThreads, b.o.conns), b.o.conns, b.o.rounds, b.o.duration, b.started.Format("2006-01-02 15:04"))
	if len(b.o.pushbackdEnv) > 0 {
		fmt.Fprintf(&s, "pushbackd ran with %s added to its environment (-pushbackd-env).\n\n", strings.Join(b.o.pushbackdEnv, " "))
	}
	s.WriteString("req/s, p50 and p99 come from wrk (a separate process; latency from its own histogram, every answer counted, after its coordinated-omission correction) unless the \"by\" column says otherwise. ")
	s.WriteString("Peak RSS is the server's VmHWM from /proc; \"anon\" is its highest sampled RssAnon (heap and stacks, without the mapped bbolt file).\n\n")
	s.WriteString("| scenario | pushbackd req/s | bare req/s | ratio | p50 | p99 | errors | peak RSS | target | holds? | by |\n")
	s.WriteString("|---|---:|---:|---:|---:|---:|---|---:|---|---|---|\n")
	for _, r := range b.rows {
		ratio := "–"
		if r.ratio != 0 {
			ratio = fmt.Sprintf("%.3f", r.ratio)
		}
		errs := r.errors
		if errs == "" {
			errs = "0"
		}
		by := r.by
		if by == "" {
			by = "wrk"
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.scenario, fmtRPS(r.pbRPS), fmtRPS(r.bareRS), ratio, fmtDur(r.p50), fmtDur(r.p99), errs, fmtMem(r.peakRSS, r.peakAnon), r.target, r.holds, by)
	}
	if len(b.notes) > 0 {
		s.WriteString("\nNotes:\n\n")
		for _, n := range b.notes {
			s.WriteString("- " + n + "\n")
		}
	}
	return s.String()
}

func memTotal() string {
	bs, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "? memory"
	}
	for line := range strings.SplitSeq(string(bs), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.1f GiB RAM", kb/(1<<20))
		}
	}
	return "? memory"
}

// side is one server in a comparison.
type side struct {
	name string
	t    target
	p    *proc // the server, for its CPU time (and its database's, p.dbCPU); may be nil
}

// attack drives t with o.conns connections for d.
func (b *bench) attack(t target, d time.Duration) (*loadResult, error) {
	return b.wrk.attack(t, b.o.conns, d)
}

// compare warms every side up, then runs o.rounds rounds of each in turn (A B A B …),
// and returns each side's merged result.
func (b *bench) compare(sides ...side) ([]*loadResult, error) {
	for _, s := range sides {
		if _, err := b.attack(s.t, b.o.warmup); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w", s.name, err)
		}
	}
	out := make([]*loadResult, len(sides))
	for i := range out {
		out[i] = &loadResult{}
	}
	for r := 1; r <= b.o.rounds; r++ {
		for i, s := range sides {
			var cpu0, db0 time.Duration
			if s.p != nil {
				cpu0 = s.p.cpu()
			}
			if s.p != nil && s.p.dbCPU != nil {
				db0 = s.p.dbCPU()
			}
			res, err := b.attack(s.t, b.o.duration)
			if err != nil {
				return nil, fmt.Errorf("round %d %s: %w", r, s.name, err)
			}
			if s.p != nil {
				res.serverCPU = s.p.cpu() - cpu0
			}
			if s.p != nil && s.p.dbCPU != nil {
				res.dbCPU = s.p.dbCPU() - db0
			}
			out[i].merge(res)
			fmt.Printf("  round %d %-11s %8.0f req/s  p50 %-8s p99 %-8s unexpected %d %s\n", r, s.name, res.RPS(),
				fmtMs(res.Quantile(0.5)), fmtMs(res.Quantile(0.99)), res.Failed(), res.codesString(s.t.Expect, s.t.Expect2))
		}
	}
	return out, nil
}

// roundRatios lists a/b round by round: each pair ran back to back, so their spread shows
// how much the shared machine moved during the scenario.
func roundRatios(a, b *loadResult) string {
	s := ""
	for i := range min(len(a.roundRPS), len(b.roundRPS)) {
		if s != "" {
			s += ", "
		}
		if b.roundRPS[i] > 0 {
			s += fmt.Sprintf("%.3f", a.roundRPS[i]/b.roundRPS[i])
		} else {
			s += "–"
		}
	}
	return s
}

func errString(r *loadResult, expect ...int) string {
	if r.Failed() == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", r.Failed(), r.codesString(expect...))
}

// stopNote stops pb and reports a failure to stop cleanly as a note.
func (b *bench) stopPB(pb *pushbackd) {
	if err := pb.stop(); err != nil {
		b.note("%s: stop: %v", pb.name, err)
	}
}

func loadavg() string {
	bs, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(bs))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuNote reports each side's server CPU time per answered request during the measured
// rounds (a figure the load generator's share of the cores does not distort), and wrk's
// own CPU per answer, which is what the load generator took from the servers.
func (b *bench) cpuNote(label string, sides []side, res []*loadResult) {
	s, c := "", ""
	for i, sd := range sides {
		if res[i].OK == 0 {
			continue
		}
		if sd.p != nil {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s %.0f µs", sd.name, float64(res[i].serverCPU.Microseconds())/float64(res[i].OK))
		}
		if res[i].Requests > 0 {
			if c != "" {
				c += ", "
			}
			c += fmt.Sprintf("against %s %.1f µs", sd.name, float64(res[i].clientCPU.Microseconds())/float64(res[i].Requests))
		}
	}
	if s != "" {
		b.note("%s: server CPU per answered request: %s; wrk CPU per answer: %s", label, s, c)
	}
}
