package admin

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store"
)

// FuzzIdempotencyFilter: whatever key, partner, site and endpoint a caller sends, a filter
// with partner and endpoint asks for a key inside exactly that scope — the gateway's scoped
// form of the sender's key, or the value itself when it is already of that scope — so no
// value reaches another scope's keys.
func FuzzIdempotencyFilter(f *testing.F) {
	f.Add("e1", "acme", "", "loans")
	f.Add("acme//loans/e1", "acme", "", "loans")
	f.Add("acme/east/loans/e1", "acme", "", "loans")
	f.Add(strings.Repeat("k", 300), "acme", "east", "loans")
	f.Add("a/b/c/d", "", "", "")
	f.Fuzz(func(t *testing.T, key, partner, site, endpoint string) {
		q := url.Values{"idempotency_key": {key}}
		for k, v := range map[string]string{"partner": partner, "site": site, "endpoint": endpoint} {
			if v != "" {
				q.Set(k, v)
			}
		}
		flt, err := parseRunFilter(q, time.Unix(0, 0))
		if err != nil || key == "" {
			return
		}
		if partner == "" || endpoint == "" {
			if flt.IdempotencyKey != key {
				t.Fatalf("without a scope the stored key %q became %q", key, flt.IdempotencyKey)
			}
			return
		}
		scope := store.KeyScope{Partner: partner, Site: site, Endpoint: endpoint}
		prefix := store.IdempotencyKey(scope, "")
		if !strings.HasPrefix(flt.IdempotencyKey, prefix) {
			t.Fatalf("filter %q is outside scope %q", flt.IdempotencyKey, prefix)
		}
		if !strings.HasPrefix(key, prefix) && flt.IdempotencyKey != store.IdempotencyKey(scope, key) {
			t.Fatalf("sender's key %q became %q, not the gateway's %q", key, flt.IdempotencyKey, store.IdempotencyKey(scope, key))
		}
	})
}
