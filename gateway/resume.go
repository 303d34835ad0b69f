package gateway

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/store"
)

// InvocationForRun makes a stored run's request into a new invocation of the saga as cfg
// has it now, for a replay. A resumed run finishes on the version it started with instead
// (Pinned.Invocation).
func InvocationForRun(cfg *config.Config, run *store.Run) (*saga.Invocation, error) {
	s, ok := cfg.Sagas[run.Saga]
	if !ok {
		return nil, fmt.Errorf("saga %q is no longer configured", run.Saga)
	}
	return invocationFor(cfg, run, s)
}

// invocationFor rebuilds a stored run's invocation of s under cfg's endpoint, settings,
// secrets and egress lists. The body is parsed again from the stored bytes; credential
// headers were redacted when the run was recorded, so a resumed saga sees "<redacted>"
// where the sender's credentials were — sagas should not depend on them.
func invocationFor(cfg *config.Config, run *store.Run, s *saga.Saga) (*saga.Invocation, error) {
	route, ok := cfg.Lookup(run.Partner, run.Site, run.Endpoint)
	if !ok {
		return nil, fmt.Errorf("endpoint %s/%s/%s is no longer configured", run.Partner, run.Site, run.Endpoint)
	}
	body, err := parseBody(run.Request.ContentType, run.Request.Body)
	if err != nil {
		return nil, fmt.Errorf("stored body: %w", err)
	}
	query, err := url.ParseQuery(run.Request.Query)
	if err != nil {
		return nil, fmt.Errorf("stored query: %w", err)
	}
	req := saga.Request{Method: run.Request.Method, Path: run.Request.Path, Headers: http.Header(run.Request.Headers), Query: query,
		RemoteIP: run.Request.RemoteIP, ContentType: run.Request.ContentType, Raw: run.Request.Body, Body: body, ReceivedAt: run.ReceivedAt}
	return NewInvocation(route, s, run.ID, req), nil
}
