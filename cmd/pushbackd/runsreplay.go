package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pushbackd/pushbackd/admin"
)

// bulkReplayFlags are the list filters a bulk replay takes (paging is the job's business).
var bulkReplayFlags = []struct{ flag, key string }{
	{"partner", "partner"}, {"site", "site"}, {"endpoint", "endpoint"}, {"status", "status"}, {"saga", "saga"},
	{"since", "since"}, {"until", "until"},
}

// jobPoll is how often the CLI reads a job's progress.
const jobPoll = 250 * time.Millisecond

// bulkReplay replays every run the filters match as a job on the server: it shows the
// dry-run count and asks (unless yes), starts the job and follows it to its end. The job
// runs on the server: interrupting the command does not stop it.
func (rc *runsCmd) bulkReplay(ctx context.Context, filters map[string]*string, yes bool, stdin io.Reader, stderr io.Writer, now time.Time) error {
	filter := map[string]string{}
	for _, f := range runFilterFlags {
		v := *filters[f.flag]
		if v == "" {
			continue
		}
		known := false
		for _, b := range bulkReplayFlags {
			known = known || b.flag == f.flag
		}
		if !known {
			return usageError{fmt.Sprintf("-%s does not apply to a bulk replay (it takes -partner, -site, -endpoint, -status, -saga, -since, -until)", f.flag)}
		}
		if f.flag == "since" || f.flag == "until" {
			t, err := parseWhen(v, now, rc.zone)
			if err != nil {
				return usageError{fmt.Sprintf("-%s: %v", f.flag, err)}
			}
			v = t.UTC().Format(time.RFC3339Nano)
		}
		filter[f.param] = v
	}
	if len(filter) == 0 {
		return usageError{"say which runs to replay: give a run id, or filters such as -status failed -since 2h"}
	}
	var count struct {
		Total  int             `json:"total"`
		Filter admin.JobFilter `json:"filter"`
	}
	if _, err := rc.send(ctx, http.MethodPost, "/admin/v1/runs/replay", map[string]any{"filter": filter, "dry_run": true}, &count); err != nil {
		return err
	}
	if count.Total == 0 {
		fmt.Fprintln(rc.stdout, "no runs match; nothing to replay")
		return nil
	}
	if !yes {
		fmt.Fprintf(stderr, "replay %d runs matching %s? [y/N] ", count.Total, describeFilter(filter))
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return fmt.Errorf("not confirmed; nothing was replayed (-yes skips the question)")
		}
	}
	var job admin.Job
	if _, err := rc.send(ctx, http.MethodPost, "/admin/v1/runs/replay", map[string]any{"filter": filter}, &job); err != nil {
		return err
	}
	if !rc.json {
		fmt.Fprintf(rc.stdout, "job %s: replaying %d runs\n", job.ID, job.Total)
	}
	last := -1
	for job.State == admin.JobRunning {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped following job %s; it keeps running on the server (GET /admin/v1/jobs/%s, cancel with POST /admin/v1/jobs/%s/cancel)", job.ID, job.ID, job.ID)
		case <-time.After(jobPoll):
		}
		if _, err := rc.call(ctx, http.MethodGet, "/admin/v1/jobs/"+url.PathEscape(job.ID), &job); err != nil {
			return err
		}
		if n := job.Done + job.Failed; n != last && !rc.json {
			fmt.Fprintf(rc.stdout, "  %d/%d replayed, %d failed\n", job.Done, job.Total, job.Failed)
			last = n
		}
	}
	if rc.json {
		raw, _ := json.Marshal(job)
		if err := rc.printJSON(raw); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(rc.stdout, "job %s %s: %d replayed, %d failed\n", job.ID, job.State, job.Done, job.Failed)
	}
	switch {
	case job.State != admin.JobDone:
		return fmt.Errorf("job %s ended %s", job.ID, job.State)
	case job.Failed > 0:
		return fmt.Errorf("%d runs could not be replayed; last error: %s", job.Failed, job.LastError)
	}
	return nil
}

// usageError is a command line that cannot work: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func describeFilter(f map[string]string) string {
	var parts []string
	for _, b := range bulkReplayFlags {
		if v, ok := f[b.key]; ok {
			parts = append(parts, b.key+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
