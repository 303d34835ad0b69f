package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// retry asks the server to retry a failed run from its failed step.
func (rc *runsCmd) retry(ctx context.Context, id string) error {
	var out struct {
		RunID   string `json:"run_id"`
		RetryOf string `json:"retry_of"`
	}
	raw, err := rc.call(ctx, http.MethodPost, "/admin/v1/runs/"+url.PathEscape(id)+"/retry", &out)
	if err != nil {
		return err
	}
	if rc.json {
		return rc.printJSON(raw)
	}
	fmt.Fprintf(rc.stdout, "retrying %s from its failed step as run %s\n", out.RetryOf, out.RunID)
	return nil
}

// cancel asks the server to cancel a run; one that started is compensated by a worker, so
// the answer may come before the run is cancelled.
func (rc *runsCmd) cancel(ctx context.Context, id string) error {
	var out struct {
		RunID           string `json:"run_id"`
		Status          string `json:"status"`
		CancelRequested bool   `json:"cancel_requested"`
	}
	raw, err := rc.call(ctx, http.MethodPost, "/admin/v1/runs/"+url.PathEscape(id)+"/cancel", &out)
	if err != nil {
		return err
	}
	if rc.json {
		return rc.printJSON(raw)
	}
	if out.CancelRequested {
		fmt.Fprintf(rc.stdout, "cancelling %s: it stops before its next step and compensates what it did (now %s; \"pushbackd runs show %s\" shows it end cancelled)\n", out.RunID, out.Status, out.RunID)
		return nil
	}
	fmt.Fprintf(rc.stdout, "cancelled %s (it had not started)\n", out.RunID)
	return nil
}
