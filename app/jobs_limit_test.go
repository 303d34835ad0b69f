package app

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/store"
)

// Each job walks the history, so only MaxActiveJobs run at once; a cancelled one frees
// its place.
func TestAtMostFourBulkReplayJobsRunAtOnce(t *testing.T) {
	a := startWith(t, jobFiles(1))
	c := newAdmin(t, a)
	seedRuns(t, a, 10, "e", store.StatusFailed)
	const body = `{"filter": {"status": "failed"}}`
	var first string
	for i := range MaxActiveJobs {
		j := c.job("POST", "/admin/v1/runs/replay", body, 202)
		if i == 0 {
			first = j.ID
		}
	}
	got := c.json("POST", "/admin/v1/runs/replay", body, 409)
	if msg, _ := got["error"].(string); !strings.Contains(msg, "too many bulk replay jobs are running") || !strings.Contains(msg, "/cancel") {
		t.Fatalf("fifth job: %v", got)
	}
	c.job("POST", "/admin/v1/jobs/"+first+"/cancel", "", 200)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, raw, _ := c.do("POST", "/admin/v1/runs/replay", c.token, body)
		if code == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a cancel, a new job is still refused: %d %s", code, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if jobs := c.json("GET", "/admin/v1/jobs", "", 200)["jobs"].([]any); len(jobs) != MaxActiveJobs+1 {
		t.Fatalf("%d jobs listed, want %d", len(jobs), MaxActiveJobs+1)
	}
}

// pace never lets two replays go closer than an interval, the first two of a job included.
func TestPaceSpacesEveryReplayByAnInterval(t *testing.T) {
	const rate = 50
	var next time.Time
	var starts []time.Time
	for range 5 {
		if err := pace(t.Context(), &next, rate); err != nil {
			t.Fatal(err)
		}
		starts = append(starts, time.Now())
	}
	// On schedule: the n-th replay no sooner than n intervals after the first, however late
	// each wake-up was; and no two closer than half an interval, even when catching up.
	interval := time.Second / rate
	if span := starts[len(starts)-1].Sub(starts[0]); span < time.Duration(len(starts)-1)*interval-time.Millisecond {
		t.Errorf("%d replays within %v, want at least %v", len(starts), span, time.Duration(len(starts)-1)*interval)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < interval/2-time.Millisecond {
			t.Errorf("replays %d and %d went %v apart, want at least %v", i-1, i, gap, interval/2)
		}
	}
}

// A job whose instance died holding it (no release) waits for its lease to run out, then
// the next sweep of a live instance takes it: never two walkers while the lease holds.
func TestAJobOfADeadInstanceIsTakenOnlyOnceItsLeaseRunsOut(t *testing.T) {
	dir := t.TempDir()
	files := jobFiles(1000)
	files["pushbackd.yaml"] += "data_dir: " + filepath.Join(dir, "data") + "\n"
	writeFiles(t, dir, files)
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	a.jobs.every = 100 * time.Millisecond
	seeded := seedRuns(t, a, 10, "e", store.StatusFailed)
	// What a dead instance leaves: a running job, leased to it for three more seconds.
	now := time.Now().UTC()
	until := now
	rec := jobRecord{Job: admin.Job{ID: uuid.Must(uuid.NewV7()).String(), Kind: "replay", State: admin.JobRunning, Total: len(seeded),
		Filter: admin.JobFilter{Status: "failed", Until: &until}, CreatedAt: now, UpdatedAt: now},
		Owner: "a-dead-instance", LeaseUntil: now.Add(3 * time.Second)}
	ctx := context.Background()
	if err := a.jobs.save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if err := a.store.Put(ctx, jobsNamespace, jobsIndexKey, []byte(`["`+rec.ID+`"]`), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	c := newAdmin(t, a)

	t.Run("while the lease holds, the job is left alone", func(t *testing.T) {
		time.Sleep(time.Until(now.Add(2 * time.Second))) // many sweeps, a second before it runs out
		if j := c.job("GET", "/admin/v1/jobs/"+rec.ID, "", 200); j.Done != 0 || j.State != admin.JobRunning {
			t.Fatalf("job taken before its lease ran out: %+v", j)
		}
	})
	t.Run("once it runs out, the job is finished here, each run replayed once", func(t *testing.T) {
		j := c.waitJob(rec.ID, 20*time.Second, jobDone)
		if j.Done != len(seeded) || j.Failed != 0 {
			t.Fatalf("job = %+v", j)
		}
		for _, id := range seeded {
			if n := replayCount(t, a, id); n != 1 {
				t.Errorf("run %s has %d replays, want 1", id, n)
			}
		}
	})
}
