package app

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/store"
)

// jobFiles is a configuration whose sagas answer at once: replays finish as fast as they
// are made, so a job's pace is the only thing that slows it.
func jobFiles(rate int) map[string]string {
	return map[string]string{
		"pushbackd.yaml": fmt.Sprintf("limits: {replay_rate: %d}\n", rate),
		"partners/acme.yaml": `id: acme
endpoints:
  - {name: e, saga: pong, security: {method: bearer, tokens: [{value: t}]}}
  - {name: other, saga: pong, security: {method: bearer, tokens: [{value: t}]}}
  - {name: quiet, saga: quiet, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/pong.yaml": `name: pong
steps:
  - name: answer
    respond: {status: 200, body: {ok: true}}
`,
		"sagas/quiet.yaml": `name: quiet
debounce: {key: "${ body.loan }", wait: 1h}
steps:
  - name: answer
    respond: {status: 200, body: {ok: true}}
`,
	}
}

// seedRuns records n finished runs of endpoint with status, as if they had run and ended so.
func seedRuns(t *testing.T, a *App, n int, endpoint string, status store.Status) []string {
	t.Helper()
	var ids []string
	for i := range n {
		r := &store.Run{Partner: "acme", Endpoint: endpoint, Saga: "pong", Mode: "async", Status: status,
			Request: store.Request{Method: "POST", Path: "/pushback/acme/" + endpoint, ContentType: "application/json",
				Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}}
		if _, err := a.store.Create(context.Background(), r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	time.Sleep(5 * time.Millisecond) // a job's default until (now) is past them all
	return ids
}

func (c *adminClient) job(method, path, body string, want int) admin.Job {
	c.t.Helper()
	code, raw, _ := c.do(method, path, c.token, body)
	if code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
	var j admin.Job
	if err := json.Unmarshal([]byte(raw), &j); err != nil {
		c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
	}
	return j
}

// waitJob polls the job until ok says so.
func (c *adminClient) waitJob(id string, timeout time.Duration, ok func(admin.Job) bool) admin.Job {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j := c.job("GET", "/admin/v1/jobs/"+id, "", 200)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s did not get there in %v: %+v", id, timeout, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jobDone(j admin.Job) bool { return j.State == admin.JobDone }

// replayCount is how many runs replay run id.
func replayCount(t *testing.T, a *App, id string) int {
	t.Helper()
	runs, _, err := a.store.List(context.Background(), store.Filter{ReplayOf: id, Limit: store.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

func TestABulkReplayJobCountsStartsAndReplaysEachMatchingRunOnce(t *testing.T) {
	a := startWith(t, jobFiles(1000))
	c := newAdmin(t, a)
	failed := seedRuns(t, a, 30, "e", store.StatusFailed)
	succeeded := seedRuns(t, a, 5, "e", store.StatusSucceeded)
	elsewhere := seedRuns(t, a, 3, "other", store.StatusFailed)
	const filter = `{"filter": {"status": "failed", "endpoint": "e", "since": "1h"}`

	t.Run("a dry run answers the count and starts nothing", func(t *testing.T) {
		got := c.json("POST", "/admin/v1/runs/replay", filter+`, "dry_run": true}`, 200)
		if got["total"] != float64(30) {
			t.Fatalf("dry run = %v, want total 30", got)
		}
		if jobs := c.json("GET", "/admin/v1/jobs", "", 200)["jobs"].([]any); len(jobs) != 0 {
			t.Fatalf("a dry run made a job: %v", jobs)
		}
	})
	var job admin.Job
	t.Run("a replay answers 202 with a running job of that total", func(t *testing.T) {
		job = c.job("POST", "/admin/v1/runs/replay", filter+`}`, 202)
		if job.ID == "" || job.Total != 30 || job.Filter.Status != "failed" || job.Filter.Endpoint != "e" || job.Filter.Until == nil {
			t.Fatalf("job = %+v", job)
		}
	})
	t.Run("the job ends done with every matching run replayed exactly once", func(t *testing.T) {
		j := c.waitJob(job.ID, 20*time.Second, jobDone)
		if j.Done != 30 || j.Failed != 0 || j.FinishedAt == nil {
			t.Fatalf("finished job = %+v", j)
		}
		for _, id := range failed {
			if n := replayCount(t, a, id); n != 1 {
				t.Errorf("run %s has %d replays, want 1", id, n)
			}
		}
		for _, id := range append(succeeded, elsewhere...) {
			if n := replayCount(t, a, id); n != 0 {
				t.Errorf("run %s outside the filter has %d replays", id, n)
			}
		}
	})
	t.Run("recent jobs list it", func(t *testing.T) {
		jobs := c.json("GET", "/admin/v1/jobs", "", 200)["jobs"].([]any)
		if len(jobs) != 1 || jobs[0].(map[string]any)["id"] != job.ID || jobs[0].(map[string]any)["state"] != "done" {
			t.Fatalf("jobs = %v", jobs)
		}
	})
	t.Run("an unknown job is a 404", func(t *testing.T) {
		c.json("GET", "/admin/v1/jobs/019b7ca9-9070-7183-a505-37589cc57c17", "", 404)
		c.json("GET", "/admin/v1/jobs/..%2f..%2fetc", "", 404)
		c.json("POST", "/admin/v1/jobs/nope/cancel", "", 404)
	})
}

func TestABulkReplayRefusesFiltersItCannotUse(t *testing.T) {
	a := startWith(t, jobFiles(50))
	c := newAdmin(t, a)
	for _, tc := range []struct{ name, body, want string }{
		{"a misspelt filter key is named", `{"filter": {"stauts": "failed"}}`, `unknown filter key "stauts"`},
		{"a paging key is not a filter", `{"filter": {"status": "failed", "limit": "5"}}`, `unknown filter key "limit"`},
		{"an empty filter would replay everything", `{"filter": {}}`, "filter is empty"},
		{"a missing filter likewise", `{"dry_run": true}`, "filter is empty"},
		{"a filter of empty values likewise", `{"filter": {"site": "", "status": ""}}`, "filter is empty"},
		{"an unknown status is named", `{"filter": {"status": "broken"}}`, `unknown status "broken"`},
		{"a malformed since is named", `{"filter": {"since": "yesterday"}}`, "since:"},
		{"since after until", `{"filter": {"since": "1h", "until": "2h"}}`, "must be before until"},
		{"a value that is not a string", `{"filter": {"status": 5}}`, `filter key "status" must be a string`},
		{"an unknown top-level key", `{"filter": {"status": "failed"}, "dryrun": true}`, "dryrun"},
		{"a body that is not JSON", `status=failed`, "the body must be"},
		{"a body past the size bound", `{"filter": {"status": "` + strings.Repeat("x", 20<<10) + `"}}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.json("POST", "/admin/v1/runs/replay", tc.body, 400)
			if msg, _ := got["error"].(string); !strings.Contains(msg, tc.want) {
				t.Fatalf("error = %q, want it to say %q", msg, tc.want)
			}
		})
	}
	if jobs := c.json("GET", "/admin/v1/jobs", "", 200)["jobs"].([]any); len(jobs) != 0 {
		t.Fatalf("a refused request made a job: %v", jobs)
	}
}

func TestABulkReplayJobIsPacedAtTheConfiguredRate(t *testing.T) {
	const rate, n = 20, 30
	a := startWith(t, jobFiles(rate))
	c := newAdmin(t, a)
	seedRuns(t, a, n, "e", store.StatusFailed)
	start := time.Now()
	job := c.job("POST", "/admin/v1/runs/replay", `{"filter": {"status": "failed"}}`, 202)
	j := c.waitJob(job.ID, 20*time.Second, jobDone)
	elapsed := time.Since(start)
	// n replays at most rate a second, the first at once: at least (n-1)/rate seconds.
	min := time.Duration(n-1) * time.Second / rate
	if j.Done != n || elapsed < min {
		t.Fatalf("%d replays took %v, want at least %v at %d/s (job %+v)", j.Done, elapsed, min, rate, j)
	}
	t.Logf("%d replays at replay_rate %d took %v (%.1f/s)", n, rate, elapsed, float64(n)/elapsed.Seconds())
}

func TestACancelledBulkReplayJobStops(t *testing.T) {
	a := startWith(t, jobFiles(10))
	c := newAdmin(t, a)
	ids := seedRuns(t, a, 40, "e", store.StatusFailed)
	job := c.job("POST", "/admin/v1/runs/replay", `{"filter": {"status": "failed"}}`, 202)
	c.waitJob(job.ID, 10*time.Second, func(j admin.Job) bool { return j.Done >= 2 })
	cancelled := c.job("POST", "/admin/v1/jobs/"+job.ID+"/cancel", "", 200)
	if cancelled.State != admin.JobCancelled || cancelled.FinishedAt == nil {
		t.Fatalf("cancel answered %+v", cancelled)
	}
	time.Sleep(500 * time.Millisecond) // five more replays' worth at 10/s
	after := c.job("GET", "/admin/v1/jobs/"+job.ID, "", 200)
	time.Sleep(300 * time.Millisecond)
	later := c.job("GET", "/admin/v1/jobs/"+job.ID, "", 200)
	replays := 0
	for _, id := range ids {
		replays += replayCount(t, a, id)
	}
	// The job records what it did up to the cancel; a replay in flight then may be made
	// without being counted.
	if after.State != admin.JobCancelled || later.Done != after.Done || replays < after.Done || replays > after.Done+1 || replays >= len(ids)/2 {
		t.Fatalf("after cancel: job %+v then %+v, %d replays made (cancelled at done %d)", after, later, replays, cancelled.Done)
	}
	again := c.job("POST", "/admin/v1/jobs/"+job.ID+"/cancel", "", 200)
	if again.State != admin.JobCancelled {
		t.Fatalf("cancelling twice: %+v", again)
	}
}

// A job survives a restart: the next start resumes it after the last run it recorded, and
// a job walked again from the start (as a second process would) makes no second replays.
func TestABulkReplayJobResumesAfterARestartWithoutReplayingTwice(t *testing.T) {
	dir := t.TempDir()
	files := jobFiles(20)
	files["pushbackd.yaml"] += "data_dir: " + filepath.Join(dir, "data") + "\n"
	writeFiles(t, dir, files)
	start := func() *App {
		a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return a
	}
	stop := func(a *App) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	a := start()
	ids := seedRuns(t, a, 30, "e", store.StatusFailed)
	c := newAdmin(t, a)
	job := c.job("POST", "/admin/v1/runs/replay", `{"filter": {"status": "failed"}}`, 202)
	before := c.waitJob(job.ID, 10*time.Second, func(j admin.Job) bool { return j.Done >= 5 })
	stop(a)

	a = start()
	c = newAdmin(t, a)
	t.Run("the next start finishes the job from its cursor", func(t *testing.T) {
		j := c.waitJob(job.ID, 20*time.Second, jobDone)
		if j.Done != 30 || j.Failed != 0 {
			t.Fatalf("resumed job = %+v (stopped at %d)", j, before.Done)
		}
		for _, id := range ids {
			if n := replayCount(t, a, id); n != 1 {
				t.Errorf("run %s has %d replays, want 1", id, n)
			}
		}
	})
	t.Run("walking the job again from the start makes no second replays", func(t *testing.T) {
		rec, _ := a.jobs.load(context.Background(), job.ID)
		rec.State, rec.Cursor, rec.Done, rec.FinishedAt = admin.JobRunning, "", 0, nil
		rec.Owner, rec.LeaseUntil = a.jobs.owner, time.Now().Add(time.Minute)
		if err := a.jobs.save(context.Background(), &rec); err != nil {
			t.Fatal(err)
		}
		a.jobs.launch(job.ID)
		j := c.waitJob(job.ID, 20*time.Second, jobDone)
		if j.Done != 30 {
			t.Fatalf("job walked again = %+v", j)
		}
		for _, id := range ids {
			if n := replayCount(t, a, id); n != 1 {
				t.Errorf("run %s has %d replays after a second walk, want 1", id, n)
			}
		}
	})
	stop(a)
}

// An operator's replays are runs of their own: the saga's debounce neither delays them
// nor lets a later replay supersede an earlier one.
func TestThreeReplaysOfADebouncedRunAreThreeRuns(t *testing.T) {
	a := startWith(t, jobFiles(50))
	c := newAdmin(t, a)
	code, first := post(t, a, "quiet", `{"loan": "L1"}`)
	code2, second := post(t, a, "quiet", `{"loan": "L1"}`)
	if code != 200 || code2 != 200 {
		t.Fatalf("posts: %d %v, %d %v", code, first, code2, second)
	}
	orig, newer := first["run_id"].(string), second["run_id"].(string)

	t.Run("the superseded run links to the run that superseded it", func(t *testing.T) {
		run := c.json("GET", "/admin/v1/runs/"+orig, "", 200)
		if run["status"] != "superseded" || run["superseded_by"] != newer {
			t.Fatalf("superseded run = %v, want superseded_by %s", run, newer)
		}
	})
	var replays []string
	for range 3 {
		replays = append(replays, c.json("POST", "/admin/v1/runs/"+newer+"/replay", "", 202)["run_id"].(string))
	}
	t.Run("each replay runs to its end, none superseded", func(t *testing.T) {
		for _, id := range replays {
			if r := waitRun(t, a, id, store.StatusSucceeded); r.SupersededBy != "" || r.DebounceKey != "" {
				t.Errorf("replay %s: superseded_by %q, debounce key %q", id, r.SupersededBy, r.DebounceKey)
			}
		}
		if run := c.json("GET", "/admin/v1/runs/"+newer, "", 200); run["status"] != "waiting" {
			t.Errorf("the replayed run itself is %v, want still waiting", run["status"])
		}
	})
	t.Run("the original lists its replays", func(t *testing.T) {
		run := c.json("GET", "/admin/v1/runs/"+newer, "", 200)
		if got := fmt.Sprint(run["replays"]); got != fmt.Sprint(replays) {
			t.Fatalf("replays = %v, want %v", got, replays)
		}
	})
}
