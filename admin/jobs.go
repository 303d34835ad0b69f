package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/pushbackd/pushbackd/store"
)

// Jobs runs bulk replay jobs: kept in the store, paced, resumed after a restart.
type Jobs interface {
	// CountRuns counts the runs f matches (a dry run).
	CountRuns(ctx context.Context, f store.Filter) (int, error)
	// StartReplay records a job replaying every run f matches and starts it.
	StartReplay(ctx context.Context, f store.Filter) (Job, error)
	// Job returns one job, or an error wrapping store.ErrNotFound.
	Job(ctx context.Context, id string) (Job, error)
	// RecentJobs returns the most recent jobs, newest first.
	RecentJobs(ctx context.Context) ([]Job, error)
	// CancelJob stops a running job; cancelling a finished one changes nothing.
	CancelJob(ctx context.Context, id string) (Job, error)
}

// ErrTooManyJobs is returned by StartReplay while MaxActiveJobs jobs are running.
var ErrTooManyJobs = errors.New("too many bulk replay jobs are running")

// Job states.
const (
	JobRunning   = "running"
	JobDone      = "done"
	JobCancelled = "cancelled"
)

// Job is a bulk replay job as stored and as the API shows it.
type Job struct {
	ID     string    `json:"id"`
	Kind   string    `json:"kind"` // "replay"
	State  string    `json:"state"`
	Total  int       `json:"total"`  // runs the filter matched when the job started
	Done   int       `json:"done"`   // runs replayed (a replay found already made counts once)
	Failed int       `json:"failed"` // runs that could not be replayed (see last_error)
	Filter JobFilter `json:"filter"`
	// Cursor is where the walk over the filter resumes: the last run handled.
	Cursor     string     `json:"cursor,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// JobFilter is the filter a job walks. Until is always set: the job's start when the
// request gave none, so the replays it makes never match its own filter.
type JobFilter struct {
	Partner  string     `json:"partner,omitempty"`
	Site     string     `json:"site,omitempty"`
	Endpoint string     `json:"endpoint,omitempty"`
	Saga     string     `json:"saga,omitempty"`
	Status   string     `json:"status,omitempty"`
	Since    *time.Time `json:"since,omitempty"`
	Until    *time.Time `json:"until,omitempty"`
}

// NewJobFilter is f as a job keeps it.
func NewJobFilter(f store.Filter) JobFilter {
	return JobFilter{Partner: f.Partner, Site: f.Site, Endpoint: f.Endpoint, Saga: f.Saga, Status: string(f.Status),
		Since: timePtr(f.Since), Until: timePtr(f.Until)}
}

// StoreFilter is the store.Filter the job walks, oldest first.
func (f JobFilter) StoreFilter() store.Filter {
	sf := store.Filter{Partner: f.Partner, Site: f.Site, Endpoint: f.Endpoint, Saga: f.Saga, Status: store.Status(f.Status), Oldest: true}
	if f.Since != nil {
		sf.Since = *f.Since
	}
	if f.Until != nil {
		sf.Until = *f.Until
	}
	return sf
}

// replayFilterKeys are the filter keys a bulk replay takes: the run filters that select a
// set of runs (paging and order are the job's own business).
var replayFilterKeys = []string{"partner", "site", "endpoint", "saga", "status", "since", "until"}

// maxReplayBody bounds a bulk replay request: a filter of seven short strings.
const maxReplayBody = 16 << 10

// parseReplayRequest reads {"filter": {...}, "dry_run": bool}. The filter is checked by the
// same rules as GET /admin/v1/runs, and must not be empty: replaying every run ever
// received is never what a forgotten key meant.
func parseReplayRequest(body io.Reader, now time.Time) (store.Filter, bool, error) {
	raw, err := io.ReadAll(io.LimitReader(body, maxReplayBody+1))
	if err != nil {
		return store.Filter{}, false, err
	}
	if len(raw) > maxReplayBody {
		return store.Filter{}, false, fmt.Errorf("the request body is larger than %d bytes", maxReplayBody)
	}
	var req struct {
		Filter map[string]json.RawMessage `json:"filter"`
		DryRun bool                       `json:"dry_run"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return store.Filter{}, false, fmt.Errorf(`the body must be {"filter": {...}, "dry_run": false}: %s`, truncate(err.Error()))
	}
	q := url.Values{}
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(req.Filter)) {
		if !slices.Contains(replayFilterKeys, k) {
			problems = append(problems, fmt.Sprintf("unknown filter key %q (known: %s)", truncate(k), strings.Join(replayFilterKeys, ", ")))
			continue
		}
		var v string
		if err := json.Unmarshal(req.Filter[k], &v); err != nil {
			problems = append(problems, fmt.Sprintf("filter key %q must be a string", k))
			continue
		}
		if v != "" { // "" matches anything, as an absent key does
			q.Set(k, v)
		}
	}
	if len(problems) > 0 {
		return store.Filter{}, false, errors.New(strings.Join(problems, "; "))
	}
	if len(q) == 0 {
		return store.Filter{}, false, fmt.Errorf("filter is empty; name the runs to replay with at least one of %s (e.g. {\"status\": \"failed\", \"since\": \"2h\"})",
			strings.Join(replayFilterKeys, ", "))
	}
	f, err := parseRunFilter(q, now)
	if err != nil {
		return f, false, err
	}
	return f, req.DryRun, nil
}

func (a *API) bulkReplay(c echo.Context) error {
	if a.o.Jobs == nil {
		return errNotFound
	}
	f, dry, err := parseReplayRequest(c.Request().Body, a.o.Clock.Now())
	if err != nil {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	if f.Until.IsZero() {
		f.Until = a.o.Clock.Now()
	}
	ctx := c.Request().Context()
	if dry {
		n, err := a.o.Jobs.CountRuns(ctx, f)
		if err != nil {
			return jobError(err)
		}
		return c.JSON(http.StatusOK, map[string]any{"total": n, "filter": NewJobFilter(f)})
	}
	j, err := a.o.Jobs.StartReplay(ctx, f)
	if err != nil {
		return jobError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/admin/v1/jobs/"+j.ID)
	return c.JSON(http.StatusAccepted, j)
}

func jobError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &apiError{code: http.StatusNotFound, message: "no such job"}
	case errors.Is(err, ErrTooManyJobs):
		return &apiError{code: http.StatusConflict, message: err.Error() + "; wait for one to finish or cancel one (POST /admin/v1/jobs/{id}/cancel)"}
	case errors.Is(err, store.ErrInvalid):
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	return err
}

func (a *API) getJob(c echo.Context) error {
	if a.o.Jobs == nil {
		return errNotFound
	}
	j, err := a.o.Jobs.Job(c.Request().Context(), c.Param("id"))
	if err != nil {
		return jobError(err)
	}
	return c.JSON(http.StatusOK, j)
}

func (a *API) listJobs(c echo.Context) error {
	if a.o.Jobs == nil {
		return errNotFound
	}
	js, err := a.o.Jobs.RecentJobs(c.Request().Context())
	if err != nil {
		return err
	}
	if js == nil {
		js = []Job{}
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": js})
}

func (a *API) cancelJob(c echo.Context) error {
	if a.o.Jobs == nil {
		return errNotFound
	}
	j, err := a.o.Jobs.CancelJob(c.Request().Context(), c.Param("id"))
	if err != nil {
		return jobError(err)
	}
	return c.JSON(http.StatusOK, j)
}
