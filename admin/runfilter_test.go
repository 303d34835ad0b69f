package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
	"github.com/pushbackd/pushbackd/store/storetest"
)

func TestAdminRunFiltersFindRunsAndRefuseWhatTheyDoNotKnow(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewManualClock()
	mem := memory.New(clock)
	t.Cleanup(func() { _ = mem.Close() })
	create := func(r *store.Run) string {
		t.Helper()
		if r.Partner == "" {
			r.Partner, r.Endpoint = "acme", "orders"
		}
		if _, err := mem.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	// Three hours ago, ninety minutes ago, and now.
	old := create(&store.Run{Saga: "forward", Status: store.StatusFailed, IdempotencyKey: "acme//orders/order-1"})
	east := create(&store.Run{Partner: "acme", Site: "east", Endpoint: "orders", Saga: "notify", Status: store.StatusSucceeded,
		IdempotencyKey: store.IdempotencyKey(store.KeyScope{Partner: "acme", Site: "east", Endpoint: "orders"}, "order-2")})
	// The same sender's key at another endpoint: a lookup by the key alone finds both.
	east1 := create(&store.Run{Partner: "acme", Site: "east", Endpoint: "orders", Saga: "notify", Status: store.StatusSucceeded,
		IdempotencyKey: store.IdempotencyKey(store.KeyScope{Partner: "acme", Site: "east", Endpoint: "orders"}, "order-1")})
	longKey := strings.Repeat("k", store.MaxKeyPartLen+1)
	long := create(&store.Run{Saga: "notify", Status: store.StatusSucceeded,
		IdempotencyKey: store.IdempotencyKey(store.KeyScope{Partner: "acme", Endpoint: "orders"}, longKey)})
	clock.Advance(90 * time.Minute)
	mid := create(&store.Run{Saga: "notify", Status: store.StatusSucceeded})
	clock.Advance(90 * time.Minute)
	replay := create(&store.Run{Saga: "forward", ReplayOf: old})
	retry := create(&store.Run{Saga: "forward", RetryOf: old})

	const token = "0123456789abcdef0123456789abcdef"
	cfg := &config.Config{Partners: []*config.Partner{{ID: "acme",
		Endpoints: []*config.Endpoint{{Name: "orders"}, {Name: "loans"}},
		Sites:     []*config.Site{{ID: "east", Endpoints: []*config.Endpoint{{Name: "orders"}}}}}}}
	api, err := admin.New(admin.Options{Control: control{cfg: cfg}, Store: readOnly{mem},
		Token: security.NewSecret(token), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	get := func(t *testing.T, query string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/v1/runs?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("GET ?%s: %d %s", query, resp.StatusCode, body)
		}
		return resp.StatusCode, out
	}

	found := []struct {
		name, query string
		want        []string // newest first
	}{
		{"saga selects that saga's runs", "saga=forward", []string{retry, replay, old}},
		{"idempotency_key selects the run with that stored key", "idempotency_key=acme//orders/order-1", []string{old}},
		{"a sender's key is scoped by the partner and endpoint given", "idempotency_key=order-1&partner=acme&endpoint=orders", []string{old}},
		{"a stored key with its partner and endpoint is taken as is", "idempotency_key=acme//orders/order-1&partner=acme&endpoint=orders", []string{old}},
		{"a sender's key is scoped to the site given", "idempotency_key=order-2&partner=acme&site=east&endpoint=orders", []string{east}},
		{"a sender's key longer than a key part is hashed as the gateway does", "idempotency_key=" + longKey + "&partner=acme&endpoint=orders", []string{long}},
		{"a sender's key under another endpoint finds nothing", "idempotency_key=order-1&partner=acme&endpoint=loans", nil},
		{"a sender's key of another scope's stored form finds nothing", "idempotency_key=acme/east/orders/order-2&partner=acme&endpoint=orders", nil},
		{"a sender's key alone is looked up under every configured endpoint", "idempotency_key=order-1", []string{east1, old}},
		{"a sender's key alone, oldest first", "idempotency_key=order-1&order=oldest", []string{old, east1}},
		{"a sender's key with a partner only", "idempotency_key=order-2&partner=acme", []string{east}},
		{"a sender's key with a site only", "idempotency_key=order-1&site=east", []string{east1}},
		{"a sender's key alone and a status", "idempotency_key=order-1&status=failed", []string{old}},
		{"a sender's key nobody sent finds nothing", "idempotency_key=nope", nil},
		{"replay_of selects the replays of a run", "replay_of=" + old, []string{replay}},
		{"replay_of accepts the id in capitals", "replay_of=" + strings.ToUpper(old), []string{replay}},
		{"retry_of selects the retries of a run", "retry_of=" + old, []string{retry}},
		{"since takes a duration before now", "since=2h", []string{retry, replay, mid}},
		{"until takes a duration before now", "until=30m", []string{mid, long, east1, east, old}},
		{"since and until combine", "since=2h&until=1h", []string{mid}},
		{"since still takes an RFC 3339 time", "since=" + clock.Now().Add(-time.Minute).UTC().Format(time.RFC3339), []string{retry, replay}},
		{"filters combine with order and status", "saga=forward&status=failed&order=oldest", []string{old}},
	}
	for _, tt := range found {
		t.Run(tt.name, func(t *testing.T) {
			code, out := get(t, tt.query)
			if code != http.StatusOK {
				t.Fatalf("GET ?%s = %d %v", tt.query, code, out)
			}
			var got []string
			for _, r := range out["runs"].([]any) {
				got = append(got, r.(map[string]any)["id"].(string))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("GET ?%s = %v, want %v", tt.query, got, tt.want)
			}
		})
	}

	refused := []struct {
		name, query string
		want        []string // fragments of the 400's message
	}{
		{"a misspelt filter is refused by name, not ignored", "stauts=failed", []string{`unknown query parameter "stauts"`, "status"}},
		{"every unknown parameter is named", "foo=1&bar=2", []string{`"bar"`, `"foo"`}},
		{"a parameter given twice is refused", "status=failed&status=succeeded", []string{`"status" is given 2 times`}},
		{"a malformed since names the forms it takes", "since=yesterday", []string{"since:", `"yesterday"`, "2h"}},
		{"a negative duration is refused", "until=-2h", []string{"until:", `"-2h"`}},
		{"a duration beyond ten years is refused", "since=1000000h", []string{"since:"}},
		{"since after until is refused", "since=1h&until=2h", []string{"since", "must be before until"}},
		{"replay_of must be a run id", "replay_of=abc", []string{"replay_of must be a run id"}},
		{"retry_of must be a run id", "retry_of=abc", []string{"retry_of must be a run id"}},
		{"a sender's key alone is one page: a cursor says to give partner and endpoint", "idempotency_key=order-1&cursor=abc", []string{"one page", "give partner and endpoint"}},
		{"a sender's key alone carried by more runs than the limit says to give partner and endpoint", "idempotency_key=order-1&limit=1", []string{"more runs than limit=1", "give partner and endpoint"}},
		{"an unknown order is refused", "order=random", []string{"order must be newest or oldest"}},
		{"a limit out of range is refused", "limit=5000", []string{"limit must be 1..1000"}},
		{"a huge value is refused before any lookup", "idempotency_key=" + strings.Repeat("k", 2000), []string{`"idempotency_key" is longer than 1024 bytes`}},
		{"a huge unknown name is echoed cut short", strings.Repeat("x", 500) + "=1", []string{"unknown query parameter", "..."}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			code, out := get(t, tt.query)
			msg, _ := out["error"].(string)
			if code != http.StatusBadRequest {
				t.Fatalf("GET ?%s = %d %v, want 400", truncate(tt.query), code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if len(msg) > 2000 {
				t.Errorf("message is %d bytes long", len(msg))
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
