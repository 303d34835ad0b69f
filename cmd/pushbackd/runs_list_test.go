package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
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

// The list's filters reach the admin API, its "more:" hint repeats them, and its times are
// shown and read in one zone that the header names.
func TestRunsListKeepsItsFiltersAndOneTimeZone(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewManualClock()
	mem := memory.New(clock)
	t.Cleanup(func() { _ = mem.Close() })
	// A run whose sender sent idempotency key e1: the store holds it scoped, "acme//loans/e1".
	keyed := &store.Run{Partner: "acme", Endpoint: "loans", Saga: "notify", Status: store.StatusSucceeded,
		IdempotencyKey: store.IdempotencyKey(store.KeyScope{Partner: "acme", Endpoint: "loans"}, "e1")}
	if _, err := mem.Create(ctx, keyed, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var failed []*store.Run // newest first
	for i := 0; i < 6; i++ {
		r := &store.Run{Partner: "acme", Endpoint: "orders", Saga: "forward", Status: store.StatusFailed}
		switch i % 3 {
		case 1:
			r.Saga = "notify"
		case 2:
			r.Status = store.StatusSucceeded
		}
		if _, err := mem.Create(ctx, r, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if r.Saga == "forward" && r.Status == store.StatusFailed {
			failed = append([]*store.Run{r}, failed...)
		}
		clock.Advance(time.Minute)
	}
	const token = "0123456789abcdef0123456789abcdef"
	cfg := &config.Config{Partners: []*config.Partner{{ID: "acme", Endpoints: []*config.Endpoint{{Name: "orders"}, {Name: "loans"}}}}}
	api, err := admin.New(admin.Options{Control: listControl{cfg: cfg}, Store: mem, Token: security.NewSecret(token), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	mustWrite(t, tokenFile, token+"\n")
	common := []string{"-config", filepath.Join(t.TempDir(), "none.yaml"), "-admin", srv.URL, "-token-file", tokenFile}
	list := func(t *testing.T, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := runCLI(t, "", append(append([]string{"runs", "list"}, args...), common...)...)
		if code != 0 {
			t.Fatalf("runs list %v: exit %d: %s", args, code, errOut)
		}
		return out, errOut
	}
	// Zoneless times are read in UTC, the zone RECEIVED is shown in.
	since := failed[1].ReceivedAt.UTC().Add(-time.Second).Format("2006-01-02 15:04:05")

	t.Run("the more hint repeats every filter so the next page is the same query", func(t *testing.T) {
		out, _ := list(t, "-status", "failed", "-saga", "forward", "-since", since, "-limit", "1")
		if !strings.Contains(out, failed[0].ID) || strings.Contains(out, failed[1].ID) {
			t.Fatalf("first page:\n%s", out)
		}
		_, hint, ok := strings.Cut(out, "more: ")
		if !ok {
			t.Fatalf("no more hint:\n%s", out)
		}
		args := strings.Fields(strings.TrimSpace(hint))
		for _, want := range []string{"-status failed", "-saga forward", "-limit 1", "-since " + failed[1].ReceivedAt.UTC().Add(-time.Second).Format(time.RFC3339Nano), "-admin " + srv.URL, "-config " + common[1], "-token-file " + tokenFile} {
			if !strings.Contains(hint, want) {
				t.Errorf("hint %q lacks %q", hint, want)
			}
		}
		if len(args) < 3 || args[0] != "pushbackd" || args[1] != "runs" || args[2] != "list" {
			t.Fatalf("hint %q is not a runs list command", hint)
		}
		code, out2, errOut := runCLI(t, "", args[1:]...)
		if code != 0 || !strings.Contains(out2, failed[1].ID) || strings.Contains(out2, failed[0].ID) {
			t.Fatalf("the hint's command: exit %d\n%s%s", code, out2, errOut)
		}
		if strings.Contains(out2, "more:") {
			t.Errorf("the window holds two runs, yet the second page offers more:\n%s", out2)
		}
	})
	t.Run("the more hint keeps a connection flag given even when it equals the default", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "runs", "list", "-limit", "1", "-config", defaultConfig, "-admin", srv.URL, "-token-file", tokenFile)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		_, hint, _ := strings.Cut(out, "more: ")
		for _, want := range []string{"-config " + defaultConfig, "-admin " + srv.URL, "-token-file " + tokenFile} {
			if !strings.Contains(hint, want) {
				t.Errorf("hint %q lacks %q", hint, want)
			}
		}
	})
	t.Run("a sender's idempotency key finds its run under the partner and endpoint given", func(t *testing.T) {
		out, _ := list(t, "-idempotency-key", "e1", "-partner", "acme", "-endpoint", "loans")
		if !strings.Contains(out, keyed.ID) {
			t.Errorf("list -idempotency-key e1 -partner acme -endpoint loans:\n%s", out)
		}
	})
	t.Run("a sender's idempotency key alone finds its run under the configured endpoints", func(t *testing.T) {
		out, _ := list(t, "-idempotency-key", "e1")
		if !strings.Contains(out, keyed.ID) {
			t.Errorf("list -idempotency-key e1:\n%s", out)
		}
	})
	t.Run("received is shown in utc and the header says so", func(t *testing.T) {
		out, _ := list(t, "-saga", "forward", "-status", "failed", "-limit", "1")
		if !strings.Contains(out, "RECEIVED (UTC)") || !strings.Contains(out, failed[0].ReceivedAt.UTC().Format("2006-01-02 15:04:05")) {
			t.Errorf("list:\n%s", out)
		}
	})
	t.Run("local shows this machine's zone and the header names it", func(t *testing.T) {
		out, _ := list(t, "-local", "-limit", "1")
		zone, _ := time.Now().Zone()
		if !strings.Contains(out, "RECEIVED (local, "+zone+")") || !strings.Contains(out, "-local") {
			t.Errorf("list -local:\n%s", out)
		}
	})
	t.Run("a relative since lists the runs of that last stretch", func(t *testing.T) {
		// The manual clock is far in the past: two hours before this machine's now holds none.
		out, _ := list(t, "-since", "2h")
		if strings.Contains(out, "acme") {
			t.Errorf("list -since 2h shows runs from %s:\n%s", clock.Now(), out)
		}
	})
	t.Run("a malformed since is refused before any call", func(t *testing.T) {
		code, _, errOut := runCLI(t, "", append([]string{"runs", "list", "-since", "yesterday"}, common...)...)
		if code != 2 || !strings.Contains(errOut, `-since: "yesterday" is neither`) || !strings.Contains(errOut, "(UTC)") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("a misspelt filter sent to the api comes back as a named error", func(t *testing.T) {
		code, _, errOut := runCLI(t, "", append([]string{"runs", "list", "-replay-of", "nope"}, common...)...)
		if code != 1 || !strings.Contains(errOut, "replay_of must be a run id") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}

// listControl is the running process as far as listing runs asks: the configuration.
type listControl struct {
	admin.Control // nil: a route that reaches for anything else panics the test
	cfg           *config.Config
}

func (c listControl) Current() *config.Config { return c.cfg }
