package app

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/store"
)

// pgJobApp starts an instance on the shared database dsn whose jobs replay at rate a
// second, with a short job lease and sweep so a test sees a job change hands in seconds.
// stop stops it once; the test's cleanup stops it otherwise.
func pgJobApp(t *testing.T, dsn, down string, rate int) (a *App, stop func()) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml": fmt.Sprintf("data_dir: %s\negress: {allow: [127.0.0.1]}\nlimits: {replay_rate: %d, auth_failures: {per_client: 100000}}\nadmin: {token: {value: %s}}\nstore:\n  driver: postgres\n  dsn: {value: %q}\n",
			filepath.Join(dir, "data"), rate, pgAdminToken, dsn),
		"partners/acme.yaml": "id: acme\nsettings: {down: \"" + down + "\"}\nendpoints: [{name: e, saga: call, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/call.yaml":    "name: call\nsteps:\n  - {name: call, http: {url: \"${ settings.down }/ok\"}}\n",
	})
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	a.jobs.lease, a.jobs.every = time.Second, 200*time.Millisecond
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := a.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func pgAdmin(t *testing.T, a *App) *adminClient {
	t.Helper()
	waitFor(t, "/readyz 200", 30*time.Second, func() bool { return getStatus(t, "http://"+a.AdminAddr()+"/readyz") == 200 })
	return &adminClient{t: t, a: a, token: pgAdminToken}
}

// seedFailedCalls stores n failed runs of pgJobApp's saga.
func seedFailedCalls(t *testing.T, a *App, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		r := &store.Run{Partner: "acme", Endpoint: "e", Saga: "call", Mode: "async", Status: store.StatusFailed,
			Request: store.Request{Method: "POST", Path: "/pushback/acme/e", ContentType: "application/json",
				Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}}
		if _, err := a.store.Create(context.Background(), r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	time.Sleep(5 * time.Millisecond) // a job's default until (now) is past them all
	return ids
}

// assertReplayedOnce checks the job finished every run, and each run has one replay.
func assertReplayedOnce(t *testing.T, a *App, j admin.Job, ids []string) {
	t.Helper()
	if j.Done != len(ids) || j.Failed != 0 || j.Total != len(ids) {
		t.Errorf("job = done %d failed %d total %d, want done %d", j.Done, j.Failed, j.Total, len(ids))
	}
	for _, id := range ids {
		if n := replayCount(t, a, id); n != 1 {
			t.Errorf("run %s has %d replays, want 1", id, n)
		}
	}
}

// A job belongs to no instance: when the one walking it stops, another instance on the
// store takes it over at its next sweep, without a restart, from where it stopped.
func TestABulkReplayJobIsFinishedByAnotherInstanceWhenItsOwnStops(t *testing.T) {
	c := needPostgres(t)
	dsn, down := c.NewDatabase(t, ""), downstream(t).URL
	first, stopFirst := pgJobApp(t, dsn, down, 10)
	second, _ := pgJobApp(t, dsn, down, 10)
	ca, cb := pgAdmin(t, first), pgAdmin(t, second)
	ids := seedFailedCalls(t, first, 30)

	job := ca.job("POST", "/admin/v1/runs/replay", `{"filter": {"status": "failed"}}`, 202)
	before := cb.waitJob(job.ID, 20*time.Second, func(j admin.Job) bool { return j.Done >= 5 })
	stopFirst()
	t.Run("the other instance finishes it, each run replayed once, the counts right", func(t *testing.T) {
		j := cb.waitJob(job.ID, 30*time.Second, jobDone)
		if j.Done <= before.Done {
			t.Errorf("done %d after the hand-over, %d before", j.Done, before.Done)
		}
		assertReplayedOnce(t, second, j, ids)
	})
}

// MaxActiveJobs counts the jobs of every instance on the store, and jobs started at the
// same moment on two instances are all kept.
func TestAtMostFourBulkReplayJobsRunAcrossInstances(t *testing.T) {
	c := needPostgres(t)
	dsn, down := c.NewDatabase(t, ""), downstream(t).URL
	first, _ := pgJobApp(t, dsn, down, 1)
	second, _ := pgJobApp(t, dsn, down, 1)
	clients := []*adminClient{pgAdmin(t, first), pgAdmin(t, second)}
	seedFailedCalls(t, first, 10)
	const body = `{"filter": {"status": "failed"}}`

	t.Run("four jobs started at once on two instances are all listed", func(t *testing.T) {
		var wg sync.WaitGroup
		codes := make([]int, MaxActiveJobs)
		for i := range MaxActiveJobs {
			wg.Go(func() { codes[i], _, _ = clients[i%2].do("POST", "/admin/v1/runs/replay", pgAdminToken, body) })
		}
		wg.Wait()
		for i, code := range codes {
			if code != 202 {
				t.Errorf("job %d: %d, want 202", i, code)
			}
		}
		for _, c := range clients {
			if jobs := c.json("GET", "/admin/v1/jobs", "", 200)["jobs"].([]any); len(jobs) != MaxActiveJobs {
				t.Errorf("%d jobs listed, want %d", len(jobs), MaxActiveJobs)
			}
		}
	})
	t.Run("a fifth on either instance is refused", func(t *testing.T) {
		for _, c := range clients {
			c.json("POST", "/admin/v1/runs/replay", body, 409)
		}
	})
}

// Jobs left running while no instance could reach the store are resumed as soon as it
// opens, by an instance that started while it was down.
func TestBulkReplayJobsResumeOnceTheStoreOpens(t *testing.T) {
	c := needPostgres(t)
	dsn, down := c.NewDatabase(t, ""), downstream(t).URL
	first, stopFirst := pgJobApp(t, dsn, down, 10)
	ca := pgAdmin(t, first)
	ids := seedFailedCalls(t, first, 30)
	job := ca.job("POST", "/admin/v1/runs/replay", `{"filter": {"status": "failed"}}`, 202)
	ca.waitJob(job.ID, 20*time.Second, func(j admin.Job) bool { return j.Done >= 3 })
	stopFirst()

	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.StartServer() }) // the cluster serves the other tests
	second, _ := pgJobApp(t, dsn, down, 10)
	time.Sleep(3 * second.jobs.every) // sweeps that find the store closed
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	cb := pgAdmin(t, second)
	j := cb.waitJob(job.ID, 30*time.Second, jobDone)
	assertReplayedOnce(t, second, j, ids)
}
