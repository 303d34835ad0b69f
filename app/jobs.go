package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/dispatch"
	"github.com/pushbackd/pushbackd/store"
)

// Bulk replay jobs are kept in the store's key-value state, under a namespace no partner
// can have (partner ids are [a-z0-9][a-z0-9-]*, and a saga's kv steps use its partner's id
// as namespace), so every backend keeps them without a table of its own: one record per
// job, and an index of recent job ids.
const (
	jobsNamespace = "!jobs"
	jobsIndexKey  = "!index" // job ids are UUIDs, so no job is called this
	// maxJobsKept bounds the index: beyond it the oldest finished jobs are forgotten.
	maxJobsKept = 100
	// MaxActiveJobs bounds the jobs running at once; each one walks the history.
	MaxActiveJobs = 4
	// jobPage is how many runs one List call of a job reads.
	jobPage = 100
	// queueFullBackoff is how long a job waits when the queue refused its replay.
	queueFullBackoff = time.Second
)

// jobRunner runs bulk replay jobs in the background. Every job's progress is written to
// the store every second and when it stops, with the last run's id as cursor, so a restart
// resumes after the last run recorded. Each replay carries an idempotency key made of the job's id
// and the run's (jobKey), so a run replayed but not yet recorded (a crash between the
// two), or replayed by a second process working on the same job, is a duplicate and not a
// second run.
type jobRunner struct {
	a *App

	mu      sync.Mutex // one read-modify-write of job records and the index at a time
	ctx     context.Context
	cancel  context.CancelFunc
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func newJobRunner(a *App) *jobRunner {
	return &jobRunner{a: a, running: map[string]context.CancelFunc{}}
}

// jobKey is the idempotency key of job's replay of run. It starts with '!', which no
// scoped sender key does (they start with a partner id, or "message-id:").
func jobKey(job, run string) string { return "!job/" + job + "/" + run }

// start resumes every job that was running when the process stopped.
func (j *jobRunner) start() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ctx, j.cancel = context.WithCancel(context.Background())
	ids, err := j.index(j.ctx)
	if err != nil {
		j.a.log.Warn("cannot read the bulk replay jobs; none resumed", zap.Error(err))
		return
	}
	for _, id := range ids {
		job, err := j.load(j.ctx, id)
		if err != nil || job.State != admin.JobRunning {
			continue
		}
		j.a.log.Info("bulk replay job resumed", zap.String("job_id", id), zap.Int("done", job.Done), zap.Int("total", job.Total))
		j.launch(id)
	}
}

// stop interrupts every job and waits for them; their records say where to resume.
func (j *jobRunner) stop() {
	j.mu.Lock()
	if j.cancel != nil {
		j.cancel()
	}
	j.mu.Unlock()
	j.wg.Wait()
}

// launch runs job id in the background. Caller holds mu.
func (j *jobRunner) launch(id string) {
	if _, ok := j.running[id]; ok || j.ctx == nil || j.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(j.ctx)
	j.running[id] = cancel
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer cancel()
		err := j.run(ctx, id)
		j.mu.Lock()
		delete(j.running, id)
		j.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			j.a.log.Error("bulk replay job stopped", zap.String("job_id", id), zap.Error(err))
		}
	}()
}

func (j *jobRunner) index(ctx context.Context) ([]string, error) {
	b, ok, err := j.a.store.Get(ctx, jobsNamespace, jobsIndexKey)
	if err != nil || !ok {
		return nil, err
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, fmt.Errorf("jobs index: %w", err)
	}
	return ids, nil
}

func (j *jobRunner) load(ctx context.Context, id string) (admin.Job, error) {
	var job admin.Job
	if _, err := uuid.Parse(id); err != nil {
		return job, fmt.Errorf("job %q: %w", id, store.ErrNotFound)
	}
	b, ok, err := j.a.store.Get(ctx, jobsNamespace, id)
	if err != nil {
		return job, err
	}
	if !ok {
		return job, fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	if err := json.Unmarshal(b, &job); err != nil {
		return job, fmt.Errorf("job %s: %w", id, err)
	}
	return job, nil
}

func (j *jobRunner) save(ctx context.Context, job *admin.Job) error {
	b, err := json.Marshal(job)
	if err != nil {
		return err
	}
	return j.a.store.Put(ctx, jobsNamespace, job.ID, b, store.PutOptions{})
}

// CountRuns walks f's pages and counts them.
func (j *jobRunner) CountRuns(ctx context.Context, f store.Filter) (int, error) {
	f.Limit, f.Cursor, f.Oldest = store.MaxListLimit, "", true
	n := 0
	for {
		runs, next, err := j.a.store.List(ctx, f)
		if err != nil {
			return n, err
		}
		n += len(runs)
		if next == "" {
			return n, nil
		}
		f.Cursor = next
	}
}

// StartReplay records a new job and starts it.
func (j *jobRunner) StartReplay(ctx context.Context, f store.Filter) (admin.Job, error) {
	total, err := j.CountRuns(ctx, f)
	if err != nil {
		return admin.Job{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return admin.Job{}, err
	}
	now := time.Now().UTC()
	job := admin.Job{ID: id.String(), Kind: "replay", State: admin.JobRunning, Total: total, Filter: admin.NewJobFilter(f),
		CreatedAt: now, UpdatedAt: now}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.running) >= MaxActiveJobs {
		return admin.Job{}, fmt.Errorf("%w: %d at once at most", admin.ErrTooManyJobs, MaxActiveJobs)
	}
	ids, err := j.index(ctx)
	if err != nil {
		return admin.Job{}, err
	}
	if err := j.save(ctx, &job); err != nil {
		return admin.Job{}, err
	}
	ids = append([]string{job.ID}, ids...)
	// Forget the oldest finished jobs beyond maxJobsKept; running ones stay listed.
	for i := len(ids) - 1; len(ids) > maxJobsKept && i > 0; i-- {
		if old, err := j.load(ctx, ids[i]); err == nil && old.State == admin.JobRunning {
			continue
		}
		if err := j.a.store.Delete(ctx, jobsNamespace, ids[i]); err != nil {
			return admin.Job{}, err
		}
		ids = slices.Delete(ids, i, i+1)
	}
	b, _ := json.Marshal(ids)
	if err := j.a.store.Put(ctx, jobsNamespace, jobsIndexKey, b, store.PutOptions{}); err != nil {
		return admin.Job{}, err
	}
	j.a.log.Info("bulk replay job started", zap.String("job_id", job.ID), zap.Int("total", total), zap.Any("filter", job.Filter))
	j.launch(job.ID)
	return job, nil
}

// Job returns one job.
func (j *jobRunner) Job(ctx context.Context, id string) (admin.Job, error) { return j.load(ctx, id) }

// RecentJobs lists the jobs in the index, newest first.
func (j *jobRunner) RecentJobs(ctx context.Context) ([]admin.Job, error) {
	ids, err := j.index(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Job, 0, len(ids))
	for _, id := range ids {
		if job, err := j.load(ctx, id); err == nil {
			out = append(out, job)
		}
	}
	return out, nil
}

// CancelJob marks a running job cancelled and stops it here; a job another process runs
// stops when it next reads its record.
func (j *jobRunner) CancelJob(ctx context.Context, id string) (admin.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, err := j.load(ctx, id)
	if err != nil || job.State != admin.JobRunning {
		return job, err
	}
	now := time.Now().UTC()
	job.State, job.UpdatedAt, job.FinishedAt = admin.JobCancelled, now, &now
	if err := j.save(ctx, &job); err != nil {
		return job, err
	}
	if cancel, ok := j.running[id]; ok {
		cancel()
	}
	j.a.log.Info("bulk replay job cancelled", zap.String("job_id", id), zap.Int("done", job.Done), zap.Int("total", job.Total))
	return job, nil
}

// progressEvery is how often a running job writes its progress: a write per replay would
// double the writes a replay costs. A crash loses at most this much of the record, never
// a replay: the runs handled since are walked again, and their replays, already made, are
// duplicates by their idempotency key (counted done once more, as they were not yet).
const progressEvery = time.Second

// flush writes the walk's progress into the stored job. It returns false when the job is
// no longer running (cancelled meanwhile): the counts are still written — they are what
// the job did — but the walk must stop.
func (j *jobRunner) flush(ctx context.Context, p *admin.Job, final bool) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, err := j.load(ctx, p.ID)
	if err != nil {
		return false, err
	}
	running := job.State == admin.JobRunning
	job.Done, job.Failed, job.Cursor, job.LastError = p.Done, p.Failed, p.Cursor, p.LastError
	job.UpdatedAt = time.Now().UTC()
	if final && running {
		job.State, job.FinishedAt = admin.JobDone, &job.UpdatedAt
	}
	return running, j.save(ctx, &job)
}

// run walks the job's filter from its cursor, oldest run first, replaying each run at
// limits.replay_rate (read for every run, so a reload applies it).
func (j *jobRunner) run(ctx context.Context, id string) (err error) {
	job, err := j.load(ctx, id)
	if err != nil {
		return err
	}
	dirty := false
	defer func() {
		if dirty && ctx.Err() != nil { // stopped or cancelled here: keep what was done
			_, ferr := j.flush(context.WithoutCancel(ctx), &job, false)
			err = errors.Join(err, ferr)
		}
	}()
	f := job.Filter.StoreFilter()
	f.Limit, f.Cursor = jobPage, job.Cursor
	var next time.Time // when the next replay may start
	flushed := time.Now()
	for {
		runs, cursor, err := j.a.store.List(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if err := pace(ctx, &next, j.a.Current().Server.Limits.ReplayRate); err != nil {
				return err
			}
			var replayErr error
			for {
				_, _, replayErr = j.a.replay(ctx, r.ID, jobKey(id, r.ID))
				if !errors.Is(replayErr, dispatch.ErrQueueFull) {
					break
				}
				if err := sleep(ctx, queueFullBackoff); err != nil {
					return err
				}
			}
			if errors.Is(replayErr, dispatch.ErrStopped) || ctx.Err() != nil {
				return ctx.Err() // shutting down: the next start replays this run
			}
			rid, err := store.ParseRunID(r.ID)
			if err != nil {
				return err
			}
			job.Cursor, dirty = store.EncodeCursor(rid), true
			if replayErr != nil {
				job.Failed++
				job.LastError = fmt.Sprintf("run %s: %v", r.ID, replayErr)
			} else {
				job.Done++
			}
			if time.Since(flushed) >= progressEvery {
				running, err := j.flush(ctx, &job, false)
				if err != nil || !running {
					return err
				}
				dirty, flushed = false, time.Now()
			}
		}
		if cursor == "" {
			if _, err := j.flush(ctx, &job, true); err != nil {
				return err
			}
			dirty = false
			j.a.log.Info("bulk replay job done", zap.String("job_id", id), zap.Int("done", job.Done), zap.Int("failed", job.Failed))
			return nil
		}
		if len(runs) == 0 {
			// A page the store's scan bound cut short: remember how far it read.
			job.Cursor, dirty = cursor, true
		}
		f.Cursor = cursor
	}
}

// pace waits until *next, then sets the earliest start of the replay after this one:
// at most rate replays per second, with no burst after an idle spell.
func pace(ctx context.Context, next *time.Time, rate int) error {
	if err := sleep(ctx, time.Until(*next)); err != nil {
		return err
	}
	// The next slot counts from this one, not from when the replay returns, so the rate
	// holds whatever a replay takes (counted from the return, 50/s came out as 33–36/s); a
	// job that fell behind (a full queue, a slow commit) goes on from now rather than
	// bursting to catch up.
	interval := time.Second / time.Duration(max(rate, 1))
	if now := time.Now(); next.Before(now.Add(-interval)) {
		*next = now // the first slot, or the job fell behind
	}
	*next = next.Add(interval)
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
