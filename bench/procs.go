package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
)

// serveChild is the bench binary re-executed as a server (-serve bare|mock): the bare Echo
// handler the ratios compare against, or the mock downstream of scenario 4's http step.
// Both read the whole body and answer 200; they run as their own processes so their RSS
// and CPU are measured like pushbackd's.
func serveChild(kind, addr string) error {
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		return fmt.Errorf("-serve-addr must be 127.0.0.1:<port>, not %q", addr)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	answer := []byte(`{"status":"OK","code":200,"message":"received"}`)
	if kind == "mock" {
		answer = []byte(`{"ok":true,"id":"mock-1"}`)
	}
	e.Any("/*", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, answer)
	})
	return e.Start(addr)
}

// freeAddr returns 127.0.0.1:<a port that was free a moment ago>.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a child process the bench started and will stop.
type proc struct {
	name    string
	cmd     *exec.Cmd
	done    chan error
	log     string
	readyIn time.Duration

	anonPeak atomic.Uint64 // highest RssAnon sampled (every 100 ms), bytes
	// dbCPU, when set, is the CPU time so far of the database server the process writes
	// to (scenario 8's Postgres): compare measures it per round beside the process's own.
	dbCPU func() time.Duration
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// mem reads the child's peak (VmHWM) and current (VmRSS) resident set, in bytes. Both
// count pages of files the process maps (pushbackd maps its bbolt file), so anon() is
// reported beside them.
func (p *proc) mem() (peak, cur uint64) {
	v := p.status("VmHWM:", "VmRSS:")
	return v[0], v[1]
}

// anon is the current anonymous resident memory (heap, stacks): RssAnon.
func (p *proc) anon() uint64 { return p.status("RssAnon:")[0] }

// sampleAnon records the peak RssAnon until the process exits.
func (p *proc) sampleAnon(exited <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if a := p.anon(); a > p.anonPeak.Load() {
			p.anonPeak.Store(a)
		}
		select {
		case <-exited:
			return
		case <-t.C:
		}
	}
}

func (p *proc) status(keys ...string) []uint64 {
	out := make([]uint64, len(keys))
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		for i, k := range keys {
			if fields[0] == k {
				v, _ := strconv.ParseUint(fields[1], 10, 64)
				out[i] = v * 1024
			}
		}
	}
	return out
}

// cpu is the child's user+system CPU time so far.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces) start after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// startProc starts argv, with env added to the bench's own environment and its output in
// logDir, and waits until probe answers 200.
func startProc(name, logDir, probe string, env []string, argv ...string) (*proc, error) {
	mustLoopback(probe)
	logPath := filepath.Join(logDir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1), log: logPath}
	exited := make(chan struct{})
	go func() { err := cmd.Wait(); close(exited); p.done <- err; lf.Close() }()
	go p.sampleAnon(exited)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("%s exited before ready (%v); log %s:\n%s", name, err, logPath, tail(logPath))
		default:
		}
		resp, err := client.Get(probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.readyIn = time.Since(start)
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after 10m; log %s", name, logPath)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (SIGKILL after 60 s).
func (p *proc) stop() error {
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == -1 { // killed by our signal
			return nil
		}
		return err
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop within 60s; killed", p.name)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// pushbackd is a running pushbackd binary with its addresses.
type pushbackd struct {
	*proc
	addr, admin, dataDir string
	token                string
}

// startPushbackd starts the built binary on c, with -pushbackd-env added to its
// environment.
func (b *bench) startPushbackd(name string, c *cfg) (*pushbackd, error) {
	p, err := startProc(name, c.dir, "http://"+c.Admin+"/readyz", b.o.pushbackdEnv, b.bin, "serve", "-config", c.file)
	if err != nil {
		return nil, err
	}
	tok := []byte(c.AdminToken)
	if c.AdminToken == "" {
		if tok, err = os.ReadFile(filepath.Join(c.DataDir, "admin.token")); err != nil {
			p.stop()
			return nil, err
		}
	}
	return &pushbackd{proc: p, addr: c.Listen, admin: c.Admin, dataDir: c.DataDir, token: strings.TrimSpace(string(tok))}, nil
}

// adminGet calls the admin API with the token.
func (pb *pushbackd) adminGet(ctx context.Context, path string) (int, []byte, error) {
	u := "http://" + pb.admin + path
	mustLoopback(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+pb.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// metric sums the samples of /metrics lines named name whose labels contain every one of
// labels (e.g. `status="succeeded"`).
func (pb *pushbackd) metric(name string, labels ...string) (float64, error) {
	_, b, err := pb.adminGet(context.Background(), "/metrics")
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, name) || len(line) <= len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	if !found && len(labels) == 0 {
		return 0, fmt.Errorf("metric %s not found", name)
	}
	return sum, nil
}
