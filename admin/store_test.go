package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/admin"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
)

// readOnly offers the API the store's four reads and nothing else: if the API needed a
// write, a queue or the whole store.Store, this would not compile.
type readOnly struct{ s *memory.Store }

func (r readOnly) List(ctx context.Context, f store.Filter) ([]*store.Run, string, error) {
	return r.s.List(ctx, f)
}
func (r readOnly) GetRun(ctx context.Context, id string) (*store.Run, error) {
	return r.s.GetRun(ctx, id)
}
func (r readOnly) SagaVersions(ctx context.Context, name string) ([]store.SagaVersion, error) {
	return r.s.SagaVersions(ctx, name)
}
func (r readOnly) SagaVersion(ctx context.Context, name string, n int) (store.SagaVersion, error) {
	return r.s.SagaVersion(ctx, name, n)
}

// control is the running process as far as read routes ask: the configuration.
type control struct {
	admin.Control // nil: a route that reaches for anything else panics the test
	cfg           *config.Config
}

func (c control) Current() *config.Config { return c.cfg }

func TestAdminServesHistoryFromAStoreThatOnlyReads(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(nil)
	t.Cleanup(func() { _ = mem.Close() })
	run := &store.Run{Partner: "acme", Endpoint: "orders", Saga: "forward", Mode: "async",
		Request: store.Request{Method: "POST", Body: []byte(`{"n":1}`)}}
	if _, err := mem.Create(ctx, run, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mem.RecordSagaVersion(ctx, "forward", []byte("steps: []\n"), "file"); err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef"
	api, err := admin.New(admin.Options{Control: control{cfg: &config.Config{}}, Store: readOnly{mem},
		Token: security.NewSecret(token)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, path string
		want       string // a fragment the answer holds
	}{
		{"the run list shows the stored run", "/admin/v1/runs", run.ID},
		{"a run is read by its id", "/admin/v1/runs/" + run.ID, `"partner":"acme"`},
		{"a missing run is 404", "/admin/v1/runs/019b7ca9-9070-7183-a505-37589cc57c17", "no run"},
		{"a saga's versions are listed", "/admin/v1/sagas/forward/versions", `"version":1`},
		{"a saga version's source is served", "/admin/v1/sagas/forward/versions/1", "steps: []"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), tt.want) {
				t.Fatalf("GET %s = %d %s, want it to hold %s", tt.path, resp.StatusCode, body, tt.want)
			}
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && !json.Valid(body) {
				t.Fatalf("GET %s: invalid JSON %s", tt.path, body)
			}
		})
	}
}
