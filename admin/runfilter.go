package admin

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// runQueryKeys are the query parameters GET /admin/v1/runs reads. Anything else is refused:
// a misspelt filter (?stauts=failed) that was ignored would list every run as if they
// matched.
var runQueryKeys = []string{"partner", "site", "endpoint", "status", "saga", "idempotency_key", "replay_of", "retry_of",
	"since", "until", "limit", "cursor", "order"}

// maxQueryValue bounds each value: the longest a stored key can be (a scoped idempotency
// key is three ids and 256 bytes of the sender's) with room to spare.
const maxQueryValue = 1024

// maxRelative bounds since=/until= durations: ten years back is before any run.
const maxRelative = 10 * 365 * 24 * time.Hour

// parseRunFilter turns GET /admin/v1/runs's query into a store.Filter. now anchors relative
// times (since=2h is two hours before now). Every problem is reported, each naming its
// parameter.
func parseRunFilter(q url.Values, now time.Time) (store.Filter, error) {
	var f store.Filter
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, k := range slices.Sorted(maps.Keys(q)) {
		switch {
		case !slices.Contains(runQueryKeys, k):
			bad("unknown query parameter %q (known: %s)", truncate(k), strings.Join(runQueryKeys, ", "))
		case len(q[k]) > 1:
			bad("query parameter %q is given %d times; give it once", k, len(q[k]))
		case len(q.Get(k)) > maxQueryValue:
			bad("query parameter %q is longer than %d bytes", k, maxQueryValue)
		}
	}
	if len(problems) > 0 {
		return f, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	f.Partner, f.Site, f.Endpoint = q.Get("partner"), q.Get("site"), q.Get("endpoint")
	f.Saga, f.Cursor = q.Get("saga"), q.Get("cursor")
	if s := q.Get("idempotency_key"); s != "" {
		key, err := idempotencyFilter(s, f.Partner, f.Site, f.Endpoint)
		if err != nil {
			bad("%v", err)
		}
		f.IdempotencyKey = key
	}
	if s := q.Get("status"); s != "" {
		f.Status = store.Status(s)
		if !f.Status.Valid() {
			bad("unknown status %q; a status is one of %s", truncate(s), statusList())
		}
	}
	if s := q.Get("replay_of"); s != "" {
		if _, err := store.ParseRunID(s); err != nil {
			bad("replay_of must be a run id, not %q", truncate(s))
		}
		f.ReplayOf = s
	}
	if s := q.Get("retry_of"); s != "" {
		if _, err := store.ParseRunID(s); err != nil {
			bad("retry_of must be a run id, not %q", truncate(s))
		}
		f.RetryOf = s
	}
	for _, t := range []struct {
		key string
		dst *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		s := q.Get(t.key)
		if s == "" {
			continue
		}
		v, err := parseWhen(s, now)
		if err != nil {
			bad("%s: %v", t.key, err)
		}
		*t.dst = v
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		bad("since (%s) must be before until (%s)", f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxListLimit {
			bad("limit must be 1..%d, not %q", store.MaxListLimit, truncate(s))
		}
		f.Limit = n
	}
	switch q.Get("order") {
	case "", "newest":
	case "oldest":
		f.Oldest = true
	default:
		bad("order must be newest or oldest, not %q", truncate(q.Get("order")))
	}
	if len(problems) > 0 {
		return f, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return f, nil
}

// idempotencyFilter turns idempotency_key's value into the stored key the index holds. Runs
// store the sender's key scoped to where it arrived ("acme//loans/e1"), but an operator holds
// the sender's key ("e1"): with partner and endpoint given (site "" when absent, as the
// gateway scopes it) it is scoped by store.IdempotencyKey, the gateway's own function, so the
// lookup stays one exact index read. A value already scoped to that scope is taken as is.
// Without partner and endpoint there is no scope to build, so the value must be a stored key;
// one that cannot be (a scoped key has three "/" before the sender's part) is refused rather
// than answered with an empty list that looks like "no such run".
func idempotencyFilter(v, partner, site, endpoint string) (string, error) {
	if partner != "" && endpoint != "" {
		scope := store.KeyScope{Partner: partner, Site: site, Endpoint: endpoint}
		if strings.HasPrefix(v, store.IdempotencyKey(scope, "")) {
			return v, nil
		}
		return store.IdempotencyKey(scope, v), nil
	}
	if strings.Count(v, "/") < 3 {
		return "", fmt.Errorf("idempotency_key %q is a sender's key, not a stored one (partner/site/endpoint/key); give partner and endpoint with a sender's key (and site for a site's endpoint)", truncate(v))
	}
	return v, nil
}

// parseWhen reads an RFC 3339 time or a duration before now ("2h", "30m", "1h30m").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > maxRelative {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time like 2026-11-22T10:00:00Z nor a duration ago like 2h or 30m (at most %s)", truncate(s), "87600h")
	}
	return now.Add(-d), nil
}

// truncate keeps echoed input short: an error names what was wrong, not all of it.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
