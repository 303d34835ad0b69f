package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunsShowListsEachTry: `runs show` prints every kept try of a retried step under it,
// with its http status and a readable duration, and says how many tries were not kept.
func TestRunsShowListsEachTry(t *testing.T) {
	const run = `{"id":"r1","status":"succeeded","attempt":1,"mode":"async","partner":"acme","endpoint":"loans",
"saga":"s","saga_version":"v","received_at":"2026-01-02T03:04:05Z","request":{"method":"POST","path":"/p"},
"result":{"steps":[{"name":"call","action":"http","status":"succeeded","attempts":12,"started":"2026-01-02T03:04:05Z","duration":61234000000,
"tries":[{"status":"failed","started":"2026-01-02T03:04:05Z","duration":1234000000,"error":"POST http://crm/tasks: unexpected status 503","http_status":503},
{"status":"succeeded","started":"2026-01-02T03:05:05Z","duration":340123456,"http_status":200}],"tries_dropped":10}]}}`
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/v1/runs/r1" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"error":"no"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(run))
	}))
	defer admin.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "runs", "show", "r1", "-admin", admin.URL, "-token-file", tok, "-config", filepath.Join(t.TempDir(), "none.yaml"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"call", "1m1s", "try 1", "failed 503", "1.2s", "unexpected status 503", "… 10 tries not kept", "try 12", "succeeded 200", "340ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

// `runs show` of a run in a retry wait prints how far it got: the steps that finished,
// then the step it waits to try again, its tries so far, and when the next is due. The
// run is a real one, on a real server, waiting out a downstream's Retry-After.
func TestRunsShowPrintsAWaitingRunsProgress(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			return
		}
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "egress: {allow: [127.0.0.1]}\nlog: {level: warn}\n")
	mustWrite(t, filepath.Join(dir, "partners/acme.yaml"), `id: acme
settings: {down: "`+down.URL+`"}
endpoints: [{name: in, saga: s, security: {method: bearer, tokens: [{value: t}]}}]
`)
	mustWrite(t, filepath.Join(dir, "sagas/s.yaml"), `name: s
steps:
  - {name: reserve, http: {method: POST, url: "${ settings.down }/ok"}}
  - name: notify
    http: {method: POST, url: "${ settings.down }/notify"}
    retry: {attempts: 5, backoff: 1s}
`)
	cfgPath := filepath.Join(dir, "pushbackd.yaml")
	a, dataDir := startConfig(t, cfgPath)
	id := postRun(t, a.Addr(), "acme/in", "t", `{}`)
	args := []string{"runs", "show", id, "-config", cfgPath, "-admin", "http://" + a.AdminAddr(), "-token-file", filepath.Join(dataDir, "admin.token")}
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, o, errOut := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if out = o; strings.Contains(out, "status    waiting") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"status    waiting", "progress  running the steps", "waiting   notify, try 2 at ", "reserve", "succeeded", "notify", "waiting", "failed 503", "unexpected status 503"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}
