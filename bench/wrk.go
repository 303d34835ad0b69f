package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk POST the scenario's body and report per-code counts and its latency
// histogram as JSON.
//
//go:embed wrk.lua
var wrkScript []byte

// wrkMarker starts the line the script's done() prints.
const wrkMarker = "bench-wrk: "

// wrk runs the load: wrk is a separate process written in C, so the load generator's cost
// is small and measurable (its CPU time is recorded per attack) instead of being hidden in
// the bench's own Go process, where an in-process generator (vegeta, before) took CPU
// from both servers and flattered pushbackd's ratios.
type wrk struct {
	bin     string
	version string
	dir     string // the script and body files
	script  string
	threads int
	n       int // attacks so far, for unique body file names
}

// newWrk finds wrk, installing Debian's package when it is missing, as .ci/run does for
// its tools.
func newWrk(dir string, threads int) (*wrk, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		if err := installWrk(); err != nil {
			return nil, fmt.Errorf("wrk is not installed and installing it failed (install the Debian package wrk, or put wrk on PATH): %w", err)
		}
		if bin, err = exec.LookPath("wrk"); err != nil {
			return nil, fmt.Errorf("wrk still not on PATH after installing it: %w", err)
		}
	}
	w := &wrk{bin: bin, dir: dir, threads: threads, script: filepath.Join(dir, "bench-wrk.lua")}
	if err := os.WriteFile(w.script, wrkScript, 0o644); err != nil {
		return nil, err
	}
	// wrk -v prints its version and exits 1.
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	w.version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if i := strings.Index(w.version, " Copyright"); i > 0 {
		w.version = w.version[:i]
	}
	return w, nil
}

func installWrk() error {
	var sudo []string
	if os.Geteuid() != 0 {
		sudo = []string{"sudo"}
	}
	fmt.Println("wrk not found: installing the Debian package wrk …")
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		{"apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"},
	} {
		argv := append(slices.Clone(sudo), args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
	}
	return nil
}

// attack saturates t with conns connections, closed loop (each connection sends its next
// request when the previous answer arrived), for d.
func (w *wrk) attack(t target, conns int, d time.Duration) (*loadResult, error) {
	mustLoopback(t.URL)
	threads := max(1, min(w.threads, conns))
	if conns%threads != 0 {
		return nil, fmt.Errorf("wrk: %d connections do not divide into %d threads", conns, threads)
	}
	w.n++
	body := filepath.Join(w.dir, fmt.Sprintf("body-%d", w.n))
	if err := os.WriteFile(body, t.Body, 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(body)
	args := []string{
		"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s",
		// The latency histogram is one counter per microsecond up to the timeout.
		"--timeout", "10s",
		"-s", w.script,
	}
	for _, name := range slices.Sorted(mapKeys(t.Header)) {
		for _, v := range t.Header[name] {
			if strings.ContainsAny(v, "\r\n") {
				return nil, fmt.Errorf("wrk: header %s has a line break", name)
			}
			args = append(args, "-H", name+": "+v)
		}
	}
	args = append(args, t.URL, body)
	cmd := exec.Command(w.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	res, err := parseWrk(stdout.Bytes(), t.Expect, t.Expect2)
	if err != nil {
		return nil, fmt.Errorf("wrk %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	res.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// wrkReport is the JSON line wrk.lua's done() prints.
type wrkReport struct {
	Requests   int            `json:"requests"`
	DurationUS int64          `json:"duration_us"`
	Codes      map[string]int `json:"codes"`
	Errors     map[string]int `json:"errors"`
	P50US      int64          `json:"p50_us"`
	P99US      int64          `json:"p99_us"`
	MaxUS      int64          `json:"max_us"`
	// Percentiles are [percent, microseconds] pairs in increasing order.
	Percentiles [][2]float64 `json:"percentiles_us"`
}

// parseWrk reads the report line out of wrk's output and turns it into a loadResult in
// which the answers with code expect (or expect2, when not 0) count as OK.
func parseWrk(out []byte, expect, expect2 int) (*loadResult, error) {
	var line []byte
	for l := range bytes.Lines(out) {
		if rest, ok := bytes.CutPrefix(l, []byte(wrkMarker)); ok {
			line = rest
		}
	}
	if line == nil {
		return nil, errors.New("no report line from the script's done(): is bench-wrk.lua loaded?")
	}
	var rep wrkReport
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, fmt.Errorf("parse the report line: %w", err)
	}
	if rep.DurationUS <= 0 {
		return nil, fmt.Errorf("report line without a duration: %s", line)
	}
	res := &loadResult{Codes: map[int]int{}, Errors: map[string]int{}, Elapsed: time.Duration(rep.DurationUS) * time.Microsecond}
	answered := 0
	for k, n := range rep.Codes {
		code, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("status code %q: %w", k, err)
		}
		res.Codes[code] += n
		answered += n
		if code == expect || (expect2 != 0 && code == expect2) {
			res.OK += n
		}
	}
	if answered != rep.Requests {
		return nil, fmt.Errorf("the script counted %d answers, wrk %d", answered, rep.Requests)
	}
	res.Requests = rep.Requests
	for _, name := range slices.Sorted(mapKeys(rep.Errors)) {
		if n := rep.Errors[name]; n > 0 {
			res.Errors[name] += n
			res.Codes[0] += n
			res.Requests += n
		}
	}
	// Each grid point stands for the answers between it and the previous one.
	prev := 0.0
	for _, pv := range rep.Percentiles {
		p, us := pv[0], pv[1]
		if p <= prev || p > 100 {
			return nil, fmt.Errorf("percentiles not increasing within (0, 100]: %v after %v", p, prev)
		}
		res.lat = append(res.lat, latMass{v: time.Duration(us) * time.Microsecond, w: (p - prev) / 100 * float64(rep.Requests)})
		prev = p
	}
	return res, nil
}
