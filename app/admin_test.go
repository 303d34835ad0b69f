package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// adminClient talks to an app's admin listener with its generated token.
type adminClient struct {
	t     *testing.T
	a     *App
	token string
}

func newAdmin(t *testing.T, a *App) *adminClient {
	t.Helper()
	path := AdminTokenPath(a.dataDir)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no generated admin token: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, want 0600", info.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	return &adminClient{t: t, a: a, token: strings.TrimSpace(string(b))}
}

func (c *adminClient) do(method, path, token, body string) (int, string, http.Header) {
	c.t.Helper()
	req, _ := http.NewRequest(method, "http://"+c.a.AdminAddr()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (c *adminClient) json(method, path, body string, want int) map[string]any {
	c.t.Helper()
	code, raw, _ := c.do(method, path, c.token, body)
	if code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		c.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
	}
	return out
}

func TestEveryAdminRouteNeedsTheToken(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	_, first := post(t, a, "answers", `{"loan":"L-1"}`)
	runID := first["run_id"]
	if runID == nil {
		// respond without run_id in its body: find the run in history instead
		runs := c.json("GET", "/admin/v1/runs?endpoint=answers", "", 200)["runs"].([]any)
		runID = runs[0].(map[string]any)["id"]
	}
	routes := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/admin/v1/endpoints", "", 200},
		{"GET", "/admin/v1/sagas", "", 200},
		{"GET", "/admin/v1/sagas/answers", "", 200},
		{"PUT", "/admin/v1/sagas/answers", sagaYAML["answers"], 200},
		{"GET", "/admin/v1/sagas/answers/versions", "", 200},
		{"GET", "/admin/v1/sagas/answers/versions/1", "", 200},
		{"POST", "/admin/v1/sagas/answers/versions/1/restore", "", 200},
		{"POST", "/admin/v1/sagas/answers/plan", `{"body": {"loan": "L-2"}}`, 200},
		{"POST", "/admin/v1/sagas/answers/test", `{"tests": "cases: [{name: x, expect: {}, mocks: {call: [{}]}}]"}`, 200},
		{"GET", "/admin/v1/runs", "", 200},
		{"GET", "/admin/v1/rejections", "", 200},
		{"GET", fmt.Sprintf("/admin/v1/runs/%v", runID), "", 200},
		{"POST", fmt.Sprintf("/admin/v1/runs/%v/replay", runID), "", 202},
		{"POST", "/admin/v1/reload", "", 200},
		{"GET", "/admin/v1/nothing-here", "", 404},
	}
	for _, r := range routes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			for _, bad := range []string{"", "wrong-token", c.token + "x"} {
				code, body, h := c.do(r.method, r.path, bad, r.body)
				if code != 401 || !strings.Contains(body, `"error"`) || h.Get("WWW-Authenticate") == "" {
					t.Errorf("token %q: %d %s, want 401 JSON", bad, code, body)
				}
			}
			code, body, _ := c.do(r.method, r.path, c.token, r.body)
			if code != r.want {
				t.Errorf("right token: %d %s, want %d", code, body, r.want)
			}
		})
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body, _ := c.do("GET", path, "", ""); code != 200 {
			t.Errorf("%s without a token: %d %s", path, code, body)
		}
	}
	if code, _, _ := c.do("GET", "/nothing", "", ""); code != 404 {
		t.Errorf("unknown route outside /admin/v1: %d", code)
	}
}

func TestSagaEditsAreValidatedVersionedAndApplied(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	// Live traffic for the whole test: every answer must come from a valid saga.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var served, bad atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				code, body := post(t, a, "answers", `{"loan":"L-1"}`)
				served.Add(1)
				if code != 201 && code != 202 {
					bad.Add(1)
					t.Errorf("live request answered %d %v", code, body)
				}
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()

	broken := "name: answers\nsteps:\n  - name: call\n    http: {url: \"${ settings.nope }/ok\"}\n    bogus: 1\n  - name: Bad\n    respond: {status: 202}\n"
	code, raw, _ := c.do("PUT", "/admin/v1/sagas/answers", c.token, broken)
	if code != 422 {
		t.Fatalf("bad saga: %d %s", code, raw)
	}
	var invalid struct {
		Errors []struct {
			File         string
			Line, Column int
			Message      string
		}
	}
	_ = json.Unmarshal([]byte(raw), &invalid)
	if len(invalid.Errors) < 2 {
		t.Fatalf("want every error, got %s", raw)
	}
	for i, e := range invalid.Errors {
		if e.Line == 0 || e.Column == 0 || e.Message == "" || strings.HasPrefix(e.File, "/") {
			t.Errorf("error without position or with a server path: %+v", e)
		}
		// The saga's own errors only: each endpoint naming it would only repeat that it did
		// not load (and must never call it missing).
		if e.File != "sagas/answers.yaml" {
			t.Errorf("error %d is %+v; want the saga's own errors alone", i, e)
		}
	}
	onDisk, _ := os.ReadFile(a.Current().SagaFile("answers"))
	if string(onDisk) != sagaYAML["answers"] {
		t.Fatal("an invalid saga was written to disk")
	}
	if code, body := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
		t.Fatalf("after a bad PUT the old version must serve: %d %v", code, body)
	}

	good := strings.Replace(sagaYAML["answers"], "status: 201", "status: 202", 1)
	v := c.json("PUT", "/admin/v1/sagas/answers", good, 200)
	if v["version"] != float64(2) || v["hash"] == "" {
		t.Errorf("new version = %v", v)
	}
	if code, _ := post(t, a, "answers", `{"loan":"L-1"}`); code != 202 {
		t.Fatalf("a good PUT must apply to the next request: %d", code)
	}
	if onDisk, _ := os.ReadFile(a.Current().SagaFile("answers")); string(onDisk) != good {
		t.Error("the applied saga is not on disk")
	}
	versions := c.json("GET", "/admin/v1/sagas/answers/versions", "", 200)["versions"].([]any)
	if len(versions) != 2 {
		t.Fatalf("versions = %v", versions)
	}
	if code, old, _ := c.do("GET", "/admin/v1/sagas/answers/versions/1", c.token, ""); code != 200 || old != sagaYAML["answers"] {
		t.Errorf("version 1 = %d %q", code, old)
	}
	restored := c.json("POST", "/admin/v1/sagas/answers/versions/1/restore", "", 200)
	if restored["version"] != float64(3) || !strings.Contains(fmt.Sprint(restored["origin"]), "restore of version 1") {
		t.Errorf("restore = %v", restored)
	}
	if code, _ := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
		t.Fatalf("the restored version must apply: %d", code)
	}
	for _, name := range []string{"..%2Fetc", "UPPER", "a.b"} {
		if code, _, _ := c.do("PUT", "/admin/v1/sagas/"+name, c.token, good); code != 400 && code != 404 {
			t.Errorf("saga name %q: %d", name, code)
		}
	}
	stop.Store(true)
	wg.Wait()
	if served.Load() == 0 || bad.Load() != 0 {
		t.Errorf("live traffic: %d served, %d bad", served.Load(), bad.Load())
	}
}

func TestAFailedReloadKeepsEverythingAsItWas(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	dir := a.Current().Dir
	// A second partner, then a reload that changes the first partner validly and breaks
	// the second: nothing of it may apply.
	other := "id: other\nendpoints: [{name: e, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: o}]}}]\n"
	if err := os.WriteFile(filepath.Join(dir, "partners/other.yaml"), []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	c.json("POST", "/admin/v1/reload", "", 200)
	before := a.Current()
	acme, _ := os.ReadFile(filepath.Join(dir, "partners/acme.yaml"))
	changed := strings.Replace(string(acme), "tokens: [{value: t}]", "tokens: [{value: t2}]", -1)
	if err := os.WriteFile(filepath.Join(dir, "partners/acme.yaml"), []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners/other.yaml"), []byte(other+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := c.json("POST", "/admin/v1/reload", "", 422)
	if !strings.Contains(fmt.Sprint(out["errors"]), `unknown key "bogus"`) {
		t.Errorf("reload errors = %v", out)
	}
	if a.Current() != before {
		t.Fatal("a failed reload replaced the configuration")
	}
	if code, _ := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
		t.Errorf("the old token must still work: %d", code)
	}
	ready := c.json("GET", "/readyz", "", 200)
	if lr := ready["last_reload"].(map[string]any); lr["ok"] != false || !strings.Contains(fmt.Sprint(lr["errors"]), "bogus") {
		t.Errorf("/readyz does not show the failed reload: %v", ready)
	}
	if m := scrape(t, c); m[`pushbackd_config_last_reload_successful`] != 0 {
		t.Errorf("reload metric = %v", m[`pushbackd_config_last_reload_successful`])
	}
}

func TestReloadsRacingWithRequests(t *testing.T) {
	a := startApp(t, "5s")
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if code, body := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
					t.Errorf("answer %d %v during reloads", code, body)
					return
				}
			}
		}()
	}
	for range 20 {
		if err := a.Reload(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}

func TestAFileChangeIsPickedUpWithoutARestart(t *testing.T) {
	a := startApp(t, "5s")
	before := a.Current()
	path := before.SagaFile("answers")
	if err := os.WriteFile(path, []byte(strings.Replace(sagaYAML["answers"], "status: 201", "status: 203", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.Current() == before {
		if time.Now().After(deadline) {
			t.Fatal("the change was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := post(t, a, "answers", `{"loan":"L-1"}`); code != 203 {
		t.Errorf("answer %d after the file changed", code)
	}
}

var sample = regexp.MustCompile(`(?m)^(pushbackd_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$`)

func scrape(t *testing.T, c *adminClient) map[string]float64 {
	t.Helper()
	code, body, _ := c.do("GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	out := map[string]float64{}
	for _, m := range sample.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

func TestMetricsCountAKnownSequence(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	for range 3 {
		if code, _ := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
			t.Fatal(code)
		}
	}
	for range 2 {
		req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/pushback/acme/answers", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer wrong")
		resp, _ := http.DefaultClient.Do(req)
		resp.Body.Close()
	}
	resp, _ := http.Post("http://"+a.Addr()+"/pushback/nobody/x", "text/plain", strings.NewReader("x"))
	resp.Body.Close()
	// A sync run's outcome is recorded just after its answer is sent, so the run counters
	// catch up a moment after the last response.
	m := scrape(t, c)
	for deadline := time.Now().Add(5 * time.Second); m[`pushbackd_runs_total{endpoint="answers",partner="acme",saga="answers",status="succeeded"}`] < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		m = scrape(t, c)
	}
	want := map[string]float64{
		`pushbackd_requests_total{code="201",endpoint="answers",partner="acme",reason=""}`:                           3,
		`pushbackd_requests_total{code="401",endpoint="answers",partner="acme",reason=""}`:                           2,
		`pushbackd_requests_total{code="404",endpoint="",partner="",reason=""}`:                                      1,
		`pushbackd_auth_failures_total{endpoint="answers",method="bearer",partner="acme",reason="mismatch",site=""}`: 2,
		`pushbackd_runs_total{endpoint="answers",partner="acme",saga="answers",status="succeeded"}`:                  3,
		`pushbackd_step_duration_seconds_count{action="http",saga="answers",status="succeeded"}`:                     3,
		`pushbackd_config_last_reload_successful`:                                                                    1,
		`pushbackd_queue_depth`:                             0,
		`pushbackd_store_commit_seconds_count{op="create"}`: 3,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

func TestRunsCanBeListedShownAndReplayed(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	code, body := post(t, a, "once", `{"eventId":"evt-9","loan":"L-9"}`)
	if code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	id := body["run_id"].(string)
	deadline := time.Now().Add(5 * time.Second)
	for {
		run := c.json("GET", "/admin/v1/runs/"+id, "", 200)
		if run["status"] == "succeeded" {
			req := run["request"].(map[string]any)
			if req["body"] != `{"eventId":"evt-9","loan":"L-9"}` || fmt.Sprint(req["headers"].(map[string]any)["Authorization"]) != "[<redacted>]" {
				t.Errorf("stored request = %v", req)
			}
			if run["result"] == nil || run["answer"] == nil {
				t.Errorf("run lacks result or answer: %v", run)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not finish: %v", run)
		}
		time.Sleep(10 * time.Millisecond)
	}
	list := c.json("GET", "/admin/v1/runs?partner=acme&endpoint=once&status=succeeded&limit=10", "", 200)
	if runs := list["runs"].([]any); len(runs) != 1 || runs[0].(map[string]any)["id"] != id {
		t.Errorf("list = %v", list)
	}
	if got := c.json("GET", "/admin/v1/runs?status=failed", "", 200)["runs"].([]any); len(got) != 0 {
		t.Errorf("status filter: %v", got)
	}
	c.json("GET", "/admin/v1/runs?status=nonsense", "", 400)
	c.json("GET", "/admin/v1/runs?since=yesterday", "", 400)
	c.json("GET", "/admin/v1/runs/not-a-run", "", 404)
	replay := c.json("POST", "/admin/v1/runs/"+id+"/replay", "", 202)
	newID := replay["run_id"].(string)
	for {
		run := c.json("GET", "/admin/v1/runs/"+newID, "", 200)
		if run["status"] == "succeeded" {
			if run["replay_of"] != id {
				t.Errorf("replay not linked: %v", run)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replay did not finish: %v", run)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunReloadsOnSIGHUPAndStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml":     "listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\ndata_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	core, logs := observer.New(zapcore.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Logger: zap.New(core)}, hup)
	}()
	waitLog := func(msg, origin string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			for _, e := range logs.FilterMessage(msg).All() {
				if origin == "" || e.ContextMap()["origin"] == origin {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q log (origin %q)", msg, origin)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog("pushbackd listening", "")
	hup <- syscall.SIGHUP
	waitLog("configuration loaded", "sighup")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// startAnswering starts an app whose one endpoint (acme/e, bearer t) answers 200 at once,
// on server, the pushbackd.yaml given.
func startAnswering(t *testing.T, server string) *App {
	return startWith(t, map[string]string{
		"pushbackd.yaml":     server,
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
}

func TestAdminTokenGuessesAreRateLimited(t *testing.T) {
	a := startAnswering(t, "limits: {auth_failures: {per_client: 2, window: 1h}}\n")
	c := newAdmin(t, a)
	var codes []int
	for _, tok := range []string{"guess-1", "guess-2", c.token} {
		code, _, _ := c.do("GET", "/admin/v1/endpoints", tok, "")
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[401 401 429]" {
		t.Errorf("codes %v, want [401 401 429]: after the budget even the right token waits", codes)
	}
	if code, _, _ := c.do("GET", "/healthz", "", ""); code != 200 {
		t.Errorf("/healthz is not behind the limiter: %d", code)
	}
}

// DESIGN's default admin.token is {env: PUSHBACKD_ADMIN_TOKEN}: a config without the key
// takes the variable, which is also where the CLI looks first, and generates nothing.
func TestTheAdminTokenDefaultsToPushbackdAdminToken(t *testing.T) {
	tok := strings.Repeat("t", 40)
	t.Setenv("PUSHBACKD_ADMIN_TOKEN", tok)
	a := startAnswering(t, "")
	c := &adminClient{t: t, a: a, token: tok}
	if code, body, _ := c.do("GET", "/admin/v1/endpoints", tok, ""); code != http.StatusOK {
		t.Fatalf("PUSHBACKD_ADMIN_TOKEN got %d %s, want 200", code, body)
	}
	if _, err := os.Stat(AdminTokenPath(a.dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a token was generated beside PUSHBACKD_ADMIN_TOKEN: %v", err)
	}
}
