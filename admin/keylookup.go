package admin

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/store"
)

// maxKeyScopes bounds the endpoints a sender's idempotency key is looked up under when a
// listing names no partner and endpoint: one exact index read each.
const maxKeyScopes = 1000

// senderKey reports whether GET /admin/v1/runs's idempotency_key is a sender's key that
// must be looked up under every endpoint it may have arrived at: partner or endpoint is
// missing, and the value is not a stored (scoped) key.
func senderKey(q url.Values) (string, bool) {
	v := q.Get("idempotency_key")
	if v == "" || (q.Get("partner") != "" && q.Get("endpoint") != "") || strings.Count(v, "/") >= 3 ||
		len(q["idempotency_key"]) > 1 || len(v) > maxQueryValue { // parseRunFilter refuses these
		return "", false
	}
	return v, true
}

// listByKey answers a listing by a sender's idempotency key without partner or endpoint.
// Runs store the key scoped to the endpoint it arrived at, so it is looked up under each
// configured endpoint the other filters allow, each an exact index read, and the runs are
// merged. Such a listing is one page: a key carried by more runs than the limit (an
// endpoint keeps one per key within idempotency_ttl) needs partner and endpoint to page.
func (a *API) listByKey(c echo.Context, key string) error {
	q := maps.Clone(c.QueryParams())
	delete(q, "idempotency_key")
	f, err := parseRunFilter(q, a.o.Clock.Now())
	if err != nil {
		return &apiError{code: http.StatusBadRequest, message: err.Error()}
	}
	if f.Cursor != "" {
		return &apiError{code: http.StatusBadRequest, message: "a listing by a sender's idempotency_key without partner and endpoint is one page; give partner and endpoint to page"}
	}
	scopes := keyScopes(a.o.Control.Current(), f.Partner, f.Site, f.Endpoint)
	if len(scopes) > maxKeyScopes {
		return &apiError{code: http.StatusBadRequest, message: fmt.Sprintf("idempotency_key %q would be looked up under %d endpoints (at most %d); give partner and endpoint", truncate(key), len(scopes), maxKeyScopes)}
	}
	limit := cmp.Or(f.Limit, store.DefaultListLimit)
	var runs []*store.Run
	for _, s := range scopes {
		g := f
		g.IdempotencyKey = store.IdempotencyKey(s, key)
		got, next, err := a.o.Store.List(c.Request().Context(), g)
		if err != nil {
			return err
		}
		runs = append(runs, got...)
		if next != "" || len(runs) > limit {
			return &apiError{code: http.StatusBadRequest, message: fmt.Sprintf("more runs than limit=%d carry idempotency_key %q; give partner and endpoint to page through them", limit, truncate(key))}
		}
	}
	slices.SortFunc(runs, func(x, y *store.Run) int {
		if f.Oldest {
			return strings.Compare(x.ID, y.ID)
		}
		return strings.Compare(y.ID, x.ID)
	})
	out := make([]runView, len(runs))
	for i, r := range runs {
		out[i] = viewRun(r, false)
	}
	return c.JSON(http.StatusOK, map[string]any{"runs": out, "next": ""})
}

// keyScopes are the scopes of the configured endpoints that partner, site and endpoint
// ("" = any) allow, a partner's own endpoints having site "".
func keyScopes(cfg *config.Config, partner, site, endpoint string) []store.KeyScope {
	var out []store.KeyScope
	add := func(p, s string, eps []*config.Endpoint) {
		for _, e := range eps {
			if endpoint == "" || e.Name == endpoint {
				out = append(out, store.KeyScope{Partner: p, Site: s, Endpoint: e.Name})
			}
		}
	}
	for _, p := range cfg.Partners {
		if partner != "" && p.ID != partner {
			continue
		}
		if site == "" {
			add(p.ID, "", p.Endpoints)
		}
		for _, s := range p.Sites {
			if site == "" || s.ID == site {
				add(p.ID, s.ID, s.Endpoints)
			}
		}
	}
	return out
}
