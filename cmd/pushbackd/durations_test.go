package main

import (
	"context"
	"fmt"
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

func TestHumanDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{1234 * time.Nanosecond, "1µs"},
		{340123456 * time.Nanosecond, "340ms"},
		{1234567891 * time.Nanosecond, "1.2s"},
		{123456 * time.Millisecond, "2m3s"},
		{26*time.Hour + 4*time.Minute + 10*time.Second, "26h4m"},
	} {
		t.Run(fmt.Sprintf("%d nanoseconds read as %s", int64(c.d), c.want), func(t *testing.T) {
			if got := humanDuration(c.d); got != c.want {
				t.Errorf("humanDuration(%d) = %q, want %q", c.d, got, c.want)
			}
		})
	}
}

// runs list and show print how long a run and each step took rounded for a reader, through
// the real admin API.
func TestRunsPrintDurationsForPeople(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewManualClock()
	mem := memory.New(clock)
	t.Cleanup(func() { _ = mem.Close() })
	r := &store.Run{Partner: "acme", Endpoint: "orders", Saga: "forward", Status: store.StatusFailed, Mode: "async", Attempt: 1,
		ReceivedAt: clock.Now(), FinishedAt: clock.Now().Add(123456 * time.Millisecond),
		Result: []byte(`{"status":"failed","steps":[{"name":"call","action":"http","status":"failed","attempts":3,"duration":1234567891,"error":"HTTP 500"}]}`)}
	if _, err := mem.Create(ctx, r, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef"
	api, err := admin.New(admin.Options{Control: listControl{cfg: &config.Config{}}, Store: mem, Token: security.NewSecret(token), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	mustWrite(t, tokenFile, token+"\n")
	common := []string{"-config", filepath.Join(t.TempDir(), "none.yaml"), "-admin", srv.URL, "-token-file", tokenFile}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"the list has a duration column with the run's time rounded", []string{"list"}, []string{"DURATION", " 2m3s "}},
		{"show says when the run finished and how long it took", []string{"show", r.ID}, []string{"(took 2m3s)"}},
		{"show prints a step's duration rounded", []string{"show", r.ID}, []string{" 1.2s "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", append(append([]string{"runs"}, c.args...), common...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "1.234567891s") || strings.Contains(out, "2m3.456s") {
				t.Errorf("unrounded duration:\n%s", out)
			}
		})
	}
}
