package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/store"
)

// downstream is the system sagas call: /ok answers, /broken fails, /slow takes its time.
func downstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"task-1"}`)
		case "/broken":
			http.Error(w, "database is down", http.StatusInternalServerError)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(w, "done")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

const partnerYAML = `id: acme
name: Acme
settings: {down: "DOWNSTREAM"}
endpoints:
  - {name: answers, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: fails, saga: fails, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: rescued, saga: rescued, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: slow, saga: slow, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: once, saga: answers, idempotency_key: "${ body.eventId }", security: {method: bearer, tokens: [{value: t}]}}
`

var sagaYAML = map[string]string{
	"answers": `name: answers
steps:
  - name: call
    http: {method: POST, url: "${ settings.down }/ok", json: {loan: "${ body.loan }"}}
  - name: answer
    respond: {status: 201, body: {task: "${ steps.call.output.body.id }", loan: "${ body.loan }"}}
`,
	"fails": `name: fails
steps:
  - name: call
    http: {url: "${ settings.down }/broken"}
`,
	"rescued": `name: rescued
steps:
  - name: call
    http: {url: "${ settings.down }/broken"}
on_failure:
  respond: {status: 202, body: {accepted: true, failed_step: "${ error.step }"}}
`,
	"slow": `name: slow
steps:
  - name: call
    http: {url: "${ settings.down }/slow"}
`,
}

func startApp(t *testing.T, syncTimeout string) *App {
	t.Helper()
	down := downstream(t)
	dir := t.TempDir()
	files := map[string]string{
		// The downstream is on loopback, which sagas reach only when egress.allow names it.
		"pushbackd.yaml":     "limits: {sync_timeout: " + syncTimeout + ", auth_failures: {per_client: 1000}}\ndata_dir: " + filepath.Join(dir, "data") + "\negress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": strings.Replace(partnerYAML, "DOWNSTREAM", down.URL, 1),
	}
	for name, src := range sagaYAML {
		files["sagas/"+name+".yaml"] = src
	}
	writeFiles(t, dir, files)
	return runApp(t, dir, zaptest.NewLogger(t), true)
}

func post(t *testing.T, a *App, endpoint, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/"+endpoint, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, out
}

func TestSyncSagasEndToEnd(t *testing.T) {
	a := startApp(t, "5s")
	t.Run("a respond step answers with what earlier steps fetched", func(t *testing.T) {
		code, body := post(t, a, "answers", `{"loan":"L-7"}`)
		if code != 201 || body["task"] != "task-1" || body["loan"] != "L-7" {
			t.Fatalf("got %d %v", code, body)
		}
	})
	t.Run("a failed saga answers 502 naming the failing step and a generic reason", func(t *testing.T) {
		code, body := post(t, a, "fails", `{}`)
		msg, _ := body["message"].(string)
		if code != 502 || msg != "step call failed: the downstream call failed" || body["run_id"] == "" {
			t.Fatalf("got %d %v", code, body)
		}
	})
	t.Run("on_failure that responds decides the answer", func(t *testing.T) {
		code, body := post(t, a, "rescued", `{}`)
		if code != 202 || body["accepted"] != true || body["failed_step"] != "call" {
			t.Fatalf("got %d %v", code, body)
		}
	})
}

func TestASagaSlowerThanSyncTimeoutAnswers504AndFinishes(t *testing.T) {
	a := startApp(t, "50ms")
	code, body := post(t, a, "slow", `{}`)
	if code != 504 || body["run_id"] == "" {
		t.Fatalf("got %d %v", code, body)
	}
	// Stop (in Cleanup) waits for the saga that outlived its request; it must not be cut.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.gateway.Wait(ctx); err != nil {
		t.Fatalf("the saga did not finish: %v", err)
	}
}

func TestFiftyConcurrentPostsOfOneEventMakeOneRun(t *testing.T) {
	a := startApp(t, "5s")
	type answer struct {
		code int
		body map[string]any
	}
	answers := make(chan answer, 50)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := post(t, a, "once", `{"eventId":"evt-1","loan":"L-1"}`)
			answers <- answer{code, body}
		}()
	}
	wg.Wait()
	close(answers)
	ids, duplicates := map[any]int{}, 0
	for ans := range answers {
		if ans.code != 200 {
			t.Fatalf("answer %d %v", ans.code, ans.body)
		}
		ids[ans.body["run_id"]]++
		if ans.body["duplicate"] == true {
			duplicates++
		}
	}
	if len(ids) != 1 || duplicates != 49 {
		t.Fatalf("run ids %v, %d duplicates; want one id and 49 duplicates", ids, duplicates)
	}
	runs, _, err := a.store.List(context.Background(), store.Filter{Partner: "acme", Endpoint: "once"})
	if err != nil || len(runs) != 1 {
		t.Fatalf("stored %d runs (%v), want 1", len(runs), err)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// writeFiles lays out a configuration directory: file name (with subdirectory) -> content.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// runApp starts an app on the config in dir, on free ports, and stops it when the test
// ends. strictStop makes an unclean stop (runs interrupted at shutdown) a test error; tests
// that leave work held at their end pass false.
func runApp(t *testing.T, dir string, log *zap.Logger, strictStop bool) *App {
	t.Helper()
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil && strictStop {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}
