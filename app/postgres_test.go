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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/internal/pgtest"
	"github.com/pushbackd/pushbackd/store"
)

// pg is the package's throwaway Postgres cluster, started by the first test that needs it
// (most app tests do not) and stopped by TestMain.
var pg struct {
	once sync.Once
	env  pgtest.Env
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.env.Cluster != nil {
		pg.env.Cluster.Stop()
	}
	os.Exit(code)
}

func needPostgres(t *testing.T) *pgtest.Cluster {
	t.Helper()
	pg.once.Do(func() { pg.env.Cluster, pg.env.Err = pgtest.Start() })
	return pg.env.Need(t)
}

const pgAdminToken = "pg-admin-token-0123456789abcdef0123"

// pgDSNPassword is in every test DSN: the cluster trusts local sockets, so it is ignored,
// but it must never show in a log line or a message.
const pgDSNPassword = "hunter2-not-for-logs"

// pgConfig writes a config directory for an app on dsn with one async endpoint, e, whose
// saga calls down.
func pgConfig(t *testing.T, dsn, down string) string {
	t.Helper()
	dir := t.TempDir()
	dsn += " password=" + pgDSNPassword
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml": fmt.Sprintf("data_dir: %s\negress: {allow: [127.0.0.1]}\nlimits: {auth_failures: {per_client: 100000}}\nhistory: {prune_interval: 200ms}\nadmin: {token: {value: %s}}\nstore:\n  driver: postgres\n  dsn: {value: %q}\n",
			filepath.Join(dir, "data"), pgAdminToken, dsn),
		"partners/acme.yaml": "id: acme\nsettings: {down: \"" + down + "\"}\nendpoints: [{name: e, saga: call, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/call.yaml":    "name: call\nsteps:\n  - {name: call, http: {url: \"${ settings.down }/ok\"}}\n",
	})
	return dir
}

// observed is a logger that keeps its entries for the test to read.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), logs
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pushback posts one async pushback and returns the status, the Retry-After header and
// the run id of a 2xx. A transport error is status 0.
func pushback(client *http.Client, a *App, body string) (int, string, string) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/e", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", ""
	}
	defer resp.Body.Close()
	var ans struct {
		RunID string `json:"run_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, resp.Header.Get("Retry-After"), ans.RunID
}

func adminRunStatus(t *testing.T, a *App, id string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+a.AdminAddr()+"/admin/v1/runs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+pgAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var run struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&run)
	return run.Status
}

func assertNoPassword(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		if strings.Contains(e.Message+string(b), pgDSNPassword) {
			t.Errorf("a log line shows the DSN's password: %s %s", e.Message, b)
		}
	}
}

func TestAnAppOnPostgresAcceptsAndRunsAPushback(t *testing.T) {
	c := needPostgres(t)
	dir := pgConfig(t, c.NewDatabase(t, ""), downstream(t).URL)
	log, logs := observed()
	a := runApp(t, dir, log, true)
	waitFor(t, "/readyz 200", 10*time.Second, func() bool { return getStatus(t, "http://"+a.AdminAddr()+"/readyz") == 200 })
	code, _, id := pushback(http.DefaultClient, a, `{"loan":"L-1"}`)
	if code/100 != 2 || id == "" {
		t.Fatalf("pushback answered %d, run %q", code, id)
	}
	waitFor(t, "the admin API to show the run succeeded", 15*time.Second, func() bool { return adminRunStatus(t, a, id) == string(store.StatusSucceeded) })
	if logs.FilterMessage("leading housekeeping: this instance prunes history and sweeps expired keys").Len() == 0 {
		waitFor(t, "the only instance to lead housekeeping", 5*time.Second, func() bool {
			return logs.FilterMessage("leading housekeeping: this instance prunes history and sweeps expired keys").Len() == 1
		})
	}
	assertNoPassword(t, logs)
}

func TestAnAppStartsBeforeItsDatabaseAndServesOnceItIsUp(t *testing.T) {
	c := needPostgres(t)
	dsn := c.NewDatabase(t, "")
	dir := pgConfig(t, dsn, downstream(t).URL)
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.StartServer() }) // the cluster serves the other tests
	log, logs := observed()
	a := runApp(t, dir, log, true)
	admin := "http://" + a.AdminAddr()

	t.Run("while the database is down: healthz 200, readyz 503, pushbacks 503 with Retry-After", func(t *testing.T) {
		if got := getStatus(t, admin+"/healthz"); got != 200 {
			t.Errorf("/healthz = %d", got)
		}
		resp, err := http.Get(admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var ready map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&ready)
		resp.Body.Close()
		// /readyz needs no token: its reason names no host, socket, user or database.
		if resp.StatusCode != 503 || ready["reason"] != "the run store is not open yet" {
			t.Errorf("/readyz = %d %v, want 503 with the reason alone", resp.StatusCode, ready)
		}
		code, retry, id := pushback(http.DefaultClient, a, `{}`)
		if code != 503 || retry == "" || id != "" {
			t.Errorf("pushback = %d, Retry-After %q, run %q", code, retry, id)
		}
		// The admin API answers the same: storage unavailable, come back, not a 500.
		for _, path := range []string{"/admin/v1/runs?limit=1", "/admin/v1/jobs"} {
			req, _ := http.NewRequest(http.MethodGet, admin+path, nil)
			req.Header.Set("Authorization", "Bearer "+pgAdminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("GET %s = %d, Retry-After %q; want 503 with Retry-After", path, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		}
	})
	t.Run("the failure to connect is logged, retried, and never shows the password", func(t *testing.T) {
		waitFor(t, "two failed attempts in the log", 10*time.Second, func() bool {
			return logs.FilterMessageSnippet("cannot open the run store").Len() >= 2
		})
		assertNoPassword(t, logs)
	})
	t.Run("once the database is up, the same process becomes ready and accepts", func(t *testing.T) {
		if err := c.StartServer(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "/readyz 200", 20*time.Second, func() bool { return getStatus(t, admin+"/readyz") == 200 })
		code, _, id := pushback(http.DefaultClient, a, `{}`)
		if code/100 != 2 || id == "" {
			t.Fatalf("pushback = %d, run %q", code, id)
		}
		waitFor(t, "the run to succeed", 15*time.Second, func() bool { return adminRunStatus(t, a, id) == string(store.StatusSucceeded) })
	})
}

func TestTwoAppsOnOneDatabaseElectOneHousekeeper(t *testing.T) {
	c := needPostgres(t)
	dsn := c.NewDatabase(t, "")
	down := downstream(t).URL
	const leading = "leading housekeeping: this instance prunes history and sweeps expired keys"
	var apps [2]*App
	var logs [2]*observer.ObservedLogs
	for i := range apps {
		log, l := observed()
		a, err := New(Options{ConfigPath: filepath.Join(pgConfig(t, dsn, down), "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		apps[i], logs[i] = a, l
	}
	stopped := [2]bool{}
	t.Cleanup(func() {
		for i, a := range apps {
			if !stopped[i] {
				_ = a.Stop(context.Background())
			}
		}
	})
	leaders := func() (n, which int) {
		for i, l := range logs {
			if l.FilterMessage(leading).Len() > 0 {
				n, which = n+1, i
			}
		}
		return n, which
	}
	var leader int
	t.Run("exactly one of the two leads", func(t *testing.T) {
		waitFor(t, "a leader", 10*time.Second, func() bool { n, _ := leaders(); return n > 0 })
		time.Sleep(2*leadRetry + time.Second) // the other tried, and more than once
		n, which := leaders()
		if n != 1 {
			t.Fatalf("%d instances lead", n)
		}
		leader = which
	})
	t.Run("stopping the leader hands housekeeping to the other", func(t *testing.T) {
		if err := apps[leader].Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		stopped[leader] = true
		other := 1 - leader
		waitFor(t, "the other instance to lead", 2*leadRetry+5*time.Second, func() bool { return logs[other].FilterMessage(leading).Len() > 0 })
	})
}

// The "Must hold": a database outage under load. Whatever the clients get during
// it is a 503 with Retry-After, or a 2xx for a run that is in the database; /readyz turns
// 503; and once the database is back every acknowledged run finishes, no restart.
func TestADatabaseOutageUnderLoadLosesNoAcknowledgedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("stops the database for 10 s")
	}
	c := needPostgres(t)
	dir := pgConfig(t, c.NewDatabase(t, ""), downstream(t).URL)
	log, logs := observed()
	a := runApp(t, dir, log, false)
	admin := "http://" + a.AdminAddr()
	waitFor(t, "/readyz 200", 10*time.Second, func() bool { return getStatus(t, admin+"/readyz") == 200 })
	t.Cleanup(func() { _ = c.StartServer() })

	var (
		mu       sync.Mutex
		acked    []string
		bad      []string
		refused  atomic.Int32
		stopLoad = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				code, retry, id := pushback(client, a, fmt.Sprintf(`{"n":"%d-%d"}`, w, i))
				mu.Lock()
				switch {
				case code >= 200 && code < 300 && id != "":
					acked = append(acked, id)
				case code == 503 && retry != "":
					refused.Add(1)
				default:
					bad = append(bad, fmt.Sprintf("%d Retry-After %q run %q", code, retry, id))
				}
				mu.Unlock()
				if code == 503 {
					time.Sleep(20 * time.Millisecond) // a sender backs off a little
				}
			}
		}()
	}
	time.Sleep(time.Second)
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	outageStart := len(snapshot(&mu, &acked))
	sawNotReady := false
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if getStatus(t, admin+"/readyz") == 503 {
			sawNotReady = true
		}
	}
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz 200 after the outage", 20*time.Second, func() bool { return getStatus(t, admin+"/readyz") == 200 })
	time.Sleep(time.Second) // accepts resume
	close(stopLoad)
	wg.Wait()

	if !sawNotReady {
		t.Error("/readyz never answered 503 during the outage")
	}
	if len(bad) > 0 {
		t.Errorf("%d answers were neither a 2xx with a run id nor a 503 with Retry-After, e.g. %s", len(bad), bad[0])
	}
	if refused.Load() == 0 {
		t.Error("no pushback was refused during a 10 s outage")
	}
	if len(acked) <= outageStart {
		t.Error("no pushback was acknowledged after the outage")
	}
	t.Logf("%d acknowledged (%d before the outage), %d refused with 503", len(acked), outageStart, refused.Load())
	// Every acknowledged run is in the database and finishes, without a restart. (Runs a
	// worker held when the database went away are claimed again when their lease ends.)
	deadline := time.Now().Add(dispatch.DefaultLeaseTTL + 30*time.Second)
	for _, id := range acked {
		for {
			run, err := a.store.GetRun(context.Background(), id)
			if err == nil && run.Status == store.StatusSucceeded {
				break
			}
			if errors.Is(err, store.ErrNotFound) {
				t.Fatalf("acknowledged run %s is not in the database: %v", id, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("acknowledged run %s did not finish: %+v, %v", id, run, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	assertNoPassword(t, logs)
}

func snapshot(mu *sync.Mutex, ids *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *ids...)
}
