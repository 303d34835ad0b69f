package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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
//
// Several instances may share the store (Postgres). KV has no compare-and-swap, but its
// MaxEntries check is one atomic step with the write, so a namespace capped at one entry,
// where each instance writes its own key, is a mutex: the first Put wins and the others get
// ErrKVFull until the winner deletes its key or the key's TTL runs out (a dead holder).
// Every read-modify-write of the index and of a job record happens under it, so no
// instance's write is lost, the MaxActiveJobs limit counts every instance's jobs, and the
// lease in each job record (owner + expiry) says which instance walks it.
const (
	jobsNamespace = "!jobs"
	jobsIndexKey  = "!index" // job ids are UUIDs, so no job is called this
	// jobsLockNamespace holds at most one key: the instance holding the jobs lock.
	jobsLockNamespace = "!jobs-lock"
	// jobsLockTTL frees the lock of an instance that died holding it. Work under the lock
	// is a few reads and writes, bounded by jobsLockWork, well inside it.
	jobsLockTTL  = 10 * time.Second
	jobsLockWork = 5 * time.Second
	// maxJobsKept bounds the index: beyond it the oldest finished jobs are forgotten.
	maxJobsKept = 100
	// MaxActiveJobs bounds the jobs running at once, across every instance on the store;
	// each one walks the history.
	MaxActiveJobs = 4
	// jobPage is how many runs one List call of a job reads.
	jobPage = 100
	// queueFullBackoff is how long a job waits when the queue refused its replay.
	queueFullBackoff = time.Second
	// defaultJobLease is how long a job stays with its instance without a progress write;
	// progress is written every progressEvery, so only a dead or cut-off instance lets it run out.
	defaultJobLease = 15 * time.Second
	// defaultJobSweep is how often an instance looks for running jobs nobody holds: their
	// instance stopped or died, or the store was not open when this one started.
	defaultJobSweep = 5 * time.Second
)

// jobRecord is a job as stored: the job, and the lease of the instance walking it.
type jobRecord struct {
	admin.Job
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// jobRunner runs bulk replay jobs in the background. Every job's progress is written to
// the store every second and when it stops, with the last run's id as cursor, so whichever
// instance takes the job next resumes after the last run recorded. Each replay carries an
// idempotency key made of the job's id and the run's (jobKey), so a run replayed but not
// yet recorded (a crash between the two), or replayed by an instance that lost the job's
// lease before it noticed, is a duplicate and not a second run.
type jobRunner struct {
	a     *App
	owner string        // this instance, in leases and the lock
	lease time.Duration // how long a progress write holds a job
	every time.Duration // how often the sweep looks for jobs nobody holds

	mu      sync.Mutex // one holder of the store lock per process
	ctx     context.Context
	cancel  context.CancelFunc
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func newJobRunner(a *App) *jobRunner {
	return &jobRunner{a: a, owner: uuid.NewString(), lease: defaultJobLease, every: defaultJobSweep, running: map[string]context.CancelFunc{}}
}

// jobKey is the idempotency key of job's replay of run. It starts with '!', which no
// scoped sender key does (they start with a partner id, or "message-id:").
func jobKey(job, run string) string { return "!job/" + job + "/" + run }

// start sweeps now and every j.every until stop: each sweep takes the running jobs whose
// lease ran out, the ones this process ran before a restart included. A store that is not
// open yet (Postgres down) only delays them to a later sweep.
func (j *jobRunner) start() {
	j.mu.Lock()
	j.ctx, j.cancel = context.WithCancel(context.Background())
	ctx := j.ctx
	j.wg.Add(1)
	j.mu.Unlock()
	go func() {
		defer j.wg.Done()
		failing := false
		t := time.NewTicker(j.every)
		defer t.Stop()
		for {
			if err := j.sweep(ctx); err != nil && ctx.Err() == nil {
				if !failing {
					j.a.log.Warn("cannot read the bulk replay jobs; trying again", zap.Error(err), zap.Duration("retry_in", j.every))
				}
				failing = true
			} else {
				failing = false
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// sweep takes and launches every running job whose lease ran out.
func (j *jobRunner) sweep(ctx context.Context) error {
	ids, err := j.index(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		rec, err := j.load(ctx, id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return err
		}
		if rec.State != admin.JobRunning || time.Now().Before(rec.LeaseUntil) || j.isRunning(id) {
			continue
		}
		var took bool
		err = j.locked(ctx, func(ctx context.Context) error {
			rec, err := j.load(ctx, id) // again: another instance may have taken it meanwhile
			if err != nil || rec.State != admin.JobRunning || time.Now().Before(rec.LeaseUntil) {
				return err
			}
			rec.Owner, rec.LeaseUntil, took = j.owner, time.Now().Add(j.lease), true
			return j.save(ctx, &rec)
		})
		if err != nil {
			return err
		}
		if took {
			j.a.log.Info("bulk replay job resumed", zap.String("job_id", id), zap.Int("done", rec.Done), zap.Int("total", rec.Total))
			j.launch(id)
		}
	}
	return nil
}

func (j *jobRunner) isRunning(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.running[id]
	return ok
}

// stop interrupts every job and waits for them; their records say where to resume, and
// their leases are given up so another instance takes them at its next sweep.
func (j *jobRunner) stop() {
	j.mu.Lock()
	if j.cancel != nil {
		j.cancel()
	}
	j.mu.Unlock()
	j.wg.Wait()
}

// launch runs job id in the background.
func (j *jobRunner) launch(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
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

// locked runs fn holding the jobs lock of every instance on the store. fn's context ends
// after jobsLockWork, before the lock's TTL could free it for another instance.
func (j *jobRunner) locked(ctx context.Context, fn func(context.Context) error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	// A dead holder's key outlives it by at most jobsLockTTL.
	wctx, cancel := context.WithTimeout(ctx, jobsLockTTL+2*time.Second)
	defer cancel()
	opts := store.PutOptions{TTL: jobsLockTTL, MaxEntries: 1}
	for {
		err := j.a.store.Put(wctx, jobsLockNamespace, j.owner, []byte(`{}`), opts)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrKVFull) {
			return fmt.Errorf("jobs lock: %w", err)
		}
		if err := sleep(wctx, time.Duration(5+rand.IntN(20))*time.Millisecond); err != nil {
			return fmt.Errorf("jobs lock: another instance holds it: %w", err)
		}
	}
	defer func() { _ = j.a.store.Delete(context.WithoutCancel(ctx), jobsLockNamespace, j.owner) }()
	fctx, fcancel := context.WithTimeout(ctx, jobsLockWork)
	defer fcancel()
	return fn(fctx)
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

func (j *jobRunner) load(ctx context.Context, id string) (jobRecord, error) {
	var rec jobRecord
	if _, err := uuid.Parse(id); err != nil {
		return rec, fmt.Errorf("job %q: %w", id, store.ErrNotFound)
	}
	b, ok, err := j.a.store.Get(ctx, jobsNamespace, id)
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("job %s: %w", id, err)
	}
	return rec, nil
}

func (j *jobRunner) save(ctx context.Context, rec *jobRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return j.a.store.Put(ctx, jobsNamespace, rec.ID, b, store.PutOptions{})
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

// StartReplay records a new job, leased to this instance, and starts it. Under the jobs
// lock it counts the running jobs of every instance, so MaxActiveJobs holds across them.
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
	rec := jobRecord{Job: admin.Job{ID: id.String(), Kind: "replay", State: admin.JobRunning, Total: total, Filter: admin.NewJobFilter(f),
		CreatedAt: now, UpdatedAt: now}, Owner: j.owner, LeaseUntil: now.Add(j.lease)}
	err = j.locked(ctx, func(ctx context.Context) error {
		ids, err := j.index(ctx)
		if err != nil {
			return err
		}
		running := make(map[string]bool, len(ids))
		for _, id := range ids {
			old, err := j.load(ctx, id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			running[id] = err == nil && old.State == admin.JobRunning
		}
		if n := len(slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !running[id] })); n >= MaxActiveJobs {
			return fmt.Errorf("%w: %d at once at most", admin.ErrTooManyJobs, MaxActiveJobs)
		}
		if err := j.save(ctx, &rec); err != nil {
			return err
		}
		ids = append([]string{rec.ID}, ids...)
		// Forget the oldest finished jobs beyond maxJobsKept; running ones stay listed.
		for i := len(ids) - 1; len(ids) > maxJobsKept && i > 0; i-- {
			if running[ids[i]] {
				continue
			}
			if err := j.a.store.Delete(ctx, jobsNamespace, ids[i]); err != nil {
				return err
			}
			ids = slices.Delete(ids, i, i+1)
		}
		b, _ := json.Marshal(ids)
		return j.a.store.Put(ctx, jobsNamespace, jobsIndexKey, b, store.PutOptions{})
	})
	if err != nil {
		return admin.Job{}, err
	}
	j.a.log.Info("bulk replay job started", zap.String("job_id", rec.ID), zap.Int("total", total), zap.Any("filter", rec.Filter))
	j.launch(rec.ID)
	return rec.Job, nil
}

// Job returns one job.
func (j *jobRunner) Job(ctx context.Context, id string) (admin.Job, error) {
	rec, err := j.load(ctx, id)
	return rec.Job, err
}

// RecentJobs lists the jobs in the index, newest first.
func (j *jobRunner) RecentJobs(ctx context.Context) ([]admin.Job, error) {
	ids, err := j.index(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Job, 0, len(ids))
	for _, id := range ids {
		if rec, err := j.load(ctx, id); err == nil {
			out = append(out, rec.Job)
		}
	}
	return out, nil
}

// CancelJob marks a running job cancelled and stops it here; a job another instance runs
// stops when it next writes its progress (within progressEvery).
func (j *jobRunner) CancelJob(ctx context.Context, id string) (admin.Job, error) {
	var rec jobRecord
	var changed bool
	err := j.locked(ctx, func(ctx context.Context) error {
		var err error
		if rec, err = j.load(ctx, id); err != nil || rec.State != admin.JobRunning {
			return err
		}
		now := time.Now().UTC()
		rec.State, rec.UpdatedAt, rec.FinishedAt, rec.Owner, rec.LeaseUntil = admin.JobCancelled, now, &now, "", time.Time{}
		changed = true
		return j.save(ctx, &rec)
	})
	if err != nil || !changed {
		return rec.Job, err
	}
	j.mu.Lock()
	if cancel, ok := j.running[id]; ok {
		cancel()
	}
	j.mu.Unlock()
	j.a.log.Info("bulk replay job cancelled", zap.String("job_id", id), zap.Int("done", rec.Done), zap.Int("total", rec.Total))
	return rec.Job, nil
}

// progressEvery is how often a running job writes its progress, renewing its lease: a
// write per replay would double the writes a replay costs. A crash loses at most this much
// of the record, never a replay: the runs handled since are walked again, and their
// replays, already made, are duplicates by their idempotency key (counted done once more,
// as they were not yet).
const progressEvery = time.Second

// flushMode says what a progress write does to the job beyond its counts.
type flushMode int

const (
	flushProgress flushMode = iota // renew the lease
	flushDone                      // the walk finished: the job is done
	flushRelease                   // this instance stops: give the lease up
)

// flush writes the walk's progress into the stored job and renews the lease. It returns
// false, writing nothing, when this instance no longer holds the job (its lease ran out
// and another instance took it), and false after writing the counts — they are what the
// job did — when the job is no longer running (cancelled meanwhile): either way the walk
// must stop.
func (j *jobRunner) flush(ctx context.Context, p *admin.Job, mode flushMode) (bool, error) {
	var running bool
	err := j.locked(ctx, func(ctx context.Context) error {
		rec, err := j.load(ctx, p.ID)
		if err != nil {
			return err
		}
		if rec.State == admin.JobRunning && rec.Owner != j.owner {
			j.a.log.Warn("bulk replay job taken by another instance; stopping here", zap.String("job_id", p.ID))
			return nil
		}
		running = rec.State == admin.JobRunning
		rec.Done, rec.Failed, rec.Cursor, rec.LastError = p.Done, p.Failed, p.Cursor, p.LastError
		rec.UpdatedAt = time.Now().UTC()
		if running {
			switch mode {
			case flushProgress:
				rec.LeaseUntil = time.Now().Add(j.lease)
			case flushDone:
				rec.State, rec.FinishedAt, rec.Owner, rec.LeaseUntil = admin.JobDone, &rec.UpdatedAt, "", time.Time{}
			case flushRelease:
				rec.Owner, rec.LeaseUntil = "", time.Time{}
			}
		}
		return j.save(ctx, &rec)
	})
	return running, err
}

// run walks the job's filter from its cursor, oldest run first, replaying each run at
// limits.replay_rate (read for every run, so a reload applies it).
func (j *jobRunner) run(ctx context.Context, id string) (err error) {
	rec, err := j.load(ctx, id)
	if err != nil {
		return err
	}
	job := rec.Job
	held := true
	defer func() {
		if held && ctx.Err() != nil { // stopped or cancelled here: keep what was done, let go
			_, ferr := j.flush(context.WithoutCancel(ctx), &job, flushRelease)
			err = errors.Join(err, ferr)
		}
	}()
	f := job.Filter.StoreFilter()
	f.Limit, f.Cursor = jobPage, job.Cursor
	var next time.Time // when the next replay may start
	flushed := time.Now()
	// renew writes the progress when it is due; false: the job is no longer ours to walk.
	renew := func() (bool, error) {
		if time.Since(flushed) < progressEvery {
			return true, nil
		}
		running, err := j.flush(ctx, &job, flushProgress)
		if err != nil || !running {
			held = false
			return false, err
		}
		flushed = time.Now()
		return true, nil
	}
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
				if ok, err := renew(); !ok { // a long wait must not let the lease run out
					return err
				}
			}
			if errors.Is(replayErr, dispatch.ErrStopped) || ctx.Err() != nil {
				return ctx.Err() // shutting down: the next holder replays this run
			}
			rid, err := store.ParseRunID(r.ID)
			if err != nil {
				return err
			}
			job.Cursor = store.EncodeCursor(rid)
			if replayErr != nil {
				job.Failed++
				job.LastError = fmt.Sprintf("run %s: %v", r.ID, replayErr)
			} else {
				job.Done++
			}
			if ok, err := renew(); !ok {
				return err
			}
		}
		if cursor == "" {
			held = false
			if _, err := j.flush(ctx, &job, flushDone); err != nil {
				return err
			}
			j.a.log.Info("bulk replay job done", zap.String("job_id", id), zap.Int("done", job.Done), zap.Int("failed", job.Failed))
			return nil
		}
		if len(runs) == 0 {
			// A page the store's scan bound cut short: remember how far it read.
			job.Cursor = cursor
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
	now := time.Now()
	if next.Before(now.Add(-interval)) {
		*next = now // the first slot, or the job fell behind
	}
	*next = next.Add(interval)
	// A late wake-up (timer slack on a loaded machine) is made up on the schedule, but
	// never by more than half an interval: no two replays closer than that.
	if soonest := now.Add(interval / 2); next.Before(soonest) {
		*next = soonest
	}
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
