package app

import (
	"strings"
	"testing"
	"time"

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
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < time.Second/rate-time.Millisecond {
			t.Errorf("replays %d and %d went %v apart, want at least %v", i-1, i, gap, time.Second/rate)
		}
	}
}
