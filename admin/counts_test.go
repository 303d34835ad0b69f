package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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

// TestRunCountsComeFromTheStore checks GET /admin/v1/runs/counts against runs stored two
// hours apart: per-status counts for a window, the cap, and 400s that name the problem.
func TestRunCountsComeFromTheStore(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewManualClock()
	mem := memory.New(clock)
	t.Cleanup(func() { _ = mem.Close() })
	add := func(partner string, st store.Status) {
		r := &store.Run{Partner: partner, Endpoint: "orders", Saga: "forward", Mode: "async", Request: store.Request{Method: "POST"}}
		if _, err := mem.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r.Status = st
		if err := mem.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	add("acme", store.StatusFailed) // two hours before now: outside since=1h
	clock.Advance(2 * time.Hour)
	for range 3 {
		add("acme", store.StatusFailed)
	}
	add("globex", store.StatusCompensationFailed)
	add("acme", store.StatusSucceeded)
	clock.Advance(time.Minute)

	const token = "0123456789abcdef0123456789abcdef"
	serve := func(s admin.Store) *httptest.Server {
		api, err := admin.New(admin.Options{Control: control{cfg: &config.Config{}}, Store: s, Token: security.NewSecret(token), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		return srv
	}
	srv := serve(mem)
	get := func(t *testing.T, srv *httptest.Server, path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	type answer struct {
		Counts map[string]int `json:"counts"`
		Capped []string       `json:"capped"`
		Max    int            `json:"max"`
	}
	ok := []struct {
		name, path string
		want       map[string]int
		capped     []string
	}{
		{"every status is counted over the whole history", "/admin/v1/runs/counts",
			map[string]int{"failed": 4, "compensation_failed": 1, "succeeded": 1, "queued": 0}, nil},
		{"since=1h leaves out the older run", "/admin/v1/runs/counts?since=1h",
			map[string]int{"failed": 3, "compensation_failed": 1, "succeeded": 1}, nil},
		{"a partner narrows the counts", "/admin/v1/runs/counts?partner=globex",
			map[string]int{"failed": 0, "compensation_failed": 1}, nil},
		{"status= counts that status alone", "/admin/v1/runs/counts?status=failed",
			map[string]int{"failed": 4}, nil},
		{"max caps each status and lists the capped ones", "/admin/v1/runs/counts?max=2",
			map[string]int{"failed": 2, "succeeded": 1}, []string{"failed"}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, srv, tt.path)
			var a answer
			if code != http.StatusOK || json.Unmarshal([]byte(body), &a) != nil {
				t.Fatalf("GET %s = %d %s", tt.path, code, body)
			}
			for st, n := range tt.want {
				if got, found := a.Counts[st]; !found || got != n {
					t.Errorf("%s: %d (present %v), want %d; answer %s", st, got, found, n, body)
				}
			}
			if strings.Contains(tt.path, "status=") && len(a.Counts) != 1 {
				t.Errorf("status= counted %d statuses: %s", len(a.Counts), body)
			}
			if strings.Join(a.Capped, ",") != strings.Join(tt.capped, ",") {
				t.Errorf("capped %v, want %v", a.Capped, tt.capped)
			}
		})
	}

	bad := []struct{ name, path, want string }{
		{"an unknown parameter is refused", "/admin/v1/runs/counts?stauts=failed", `unknown query parameter \"stauts\"`},
		{"a filter no index answers is refused", "/admin/v1/runs/counts?saga=forward", `unknown query parameter \"saga\"`},
		{"max above the bound is refused", "/admin/v1/runs/counts?max=100001", "max must be 1..100000"},
		{"max zero is refused", "/admin/v1/runs/counts?max=0", "max must be 1..100000"},
		{"an unknown status is refused", "/admin/v1/runs/counts?status=nope", `unknown status \"nope\"`},
		{"a malformed since is refused", "/admin/v1/runs/counts?since=yesterday", "since:"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, srv, tt.path)
			if code != http.StatusBadRequest || !strings.Contains(body, tt.want) {
				t.Fatalf("GET %s = %d %s, want 400 naming %s", tt.path, code, body, tt.want)
			}
		})
	}

	t.Run("a store that cannot count answers 501", func(t *testing.T) {
		code, body := get(t, serve(readOnly{mem}), "/admin/v1/runs/counts")
		if code != http.StatusNotImplemented || !strings.Contains(body, "cannot count") {
			t.Fatalf("GET = %d %s, want 501", code, body)
		}
	})
}
