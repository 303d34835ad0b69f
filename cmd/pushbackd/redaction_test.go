package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pushbackd/pushbackd/app"
)

// TestABasicAuthHeaderBuiltFromSecretsIsNeverRecorded is the reproduction: a
// header `Authorization: "Basic ${ toBase64(secret('user') + ':' + secret('pw')) }"`. The
// downstream gets the real header; the run record (admin API), the plans (admin API and
// CLI), every log line (debug level) and the bbolt file's bytes hold neither the header's
// value nor either secret in any usual encoding, even though the downstream echoes the
// header back in its answer, once as a success and once inside an error.
func TestABasicAuthHeaderBuiltFromSecretsIsNeverRecorded(t *testing.T) {
	const user, pw = "svc-user-Q7x", "pw-Z9!q/+x-long"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))

	var mu sync.Mutex
	var received []string
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Get("Authorization"))
		mu.Unlock()
		status := http.StatusOK
		if r.URL.Path == "/fail" {
			status = http.StatusInternalServerError
		}
		// A careless downstream: it answers with the credentials it was sent.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"you_sent": %q}`, r.Header.Get("Authorization"))
	}))
	defer down.Close()

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "pushbackd.yaml")
	mustWrite(t, cfgPath, "limits: {sync_timeout: 5s, auth_failures: {per_client: 1000}}\negress: {allow: [127.0.0.1]}\nlog: {level: debug}\n")
	mustWrite(t, filepath.Join(dir, "partners/acme.yaml"), `id: acme
settings: {base: "`+down.URL+`"}
secrets: {user: {value: "`+user+`"}, pw: {value: "`+pw+`"}}
endpoints:
  - {name: hook, saga: creds, mode: sync, security: {method: bearer, tokens: [{value: sender-token-1}]}}
`)
	mustWrite(t, filepath.Join(dir, "sagas/creds.yaml"), `name: creds
steps:
  - name: call
    http:
      url: ${ settings.base }/${ body.path }
      headers:
        Authorization: "Basic ${ toBase64(secret('user') + ':' + secret('pw')) }"
`)
	core, logs := observer.New(zapcore.DebugLevel)
	a, err := app.New(app.Options{ConfigPath: cfgPath, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: dataDir, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = a.Stop(context.Background())
		}
	}()
	tokenBytes, err := os.ReadFile(app.AdminTokenPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	adminToken := strings.TrimSpace(string(tokenBytes))

	var seen strings.Builder // everything the admin API and the CLI showed
	call := func(method, addr, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	runIDs := map[string]string{}
	for _, path := range []string{"ok", "fail"} {
		code, ans := call("POST", a.Addr(), "/pushback/acme/hook", "sender-token-1", `{"path": "`+path+`"}`)
		if want := map[string]int{"ok": 200, "fail": 502}[path]; code != want {
			t.Fatalf("%s: %d %s, want %d", path, code, ans, want)
		}
		seen.WriteString(ans)
		i := strings.Index(ans, `"run_id":"`)
		if i < 0 {
			t.Fatalf("no run id in %s", ans)
		}
		runIDs[path] = ans[i+10 : i+10+36]
	}
	for path, id := range runIDs {
		var run string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			_, run = call("GET", a.AdminAddr(), "/admin/v1/runs/"+id, adminToken, "")
			if !strings.Contains(run, `"status":"running"`) || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(run, `"Authorization":"\u003credacted\u003e"`) {
			t.Errorf("the %s run's step input does not show the header as <redacted>: %s", path, run)
		}
		seen.WriteString(run)
	}
	code, plan := call("POST", a.AdminAddr(), "/admin/v1/sagas/creds/plan", adminToken, `{"body": {"path": "x"}}`)
	if code != 200 || !strings.Contains(plan, `"Authorization":"\u003credacted\u003e"`) {
		t.Errorf("admin plan: %d %s", code, plan)
	}
	seen.WriteString(plan)
	sample := filepath.Join(dir, "sample.json")
	mustWrite(t, sample, `{"body": {"path": "x"}}`)
	exit, cliPlan, errOut := runCLI(t, "", "plan", "creds", "-file", sample, "-config", cfgPath)
	if exit != 0 || !strings.Contains(cliPlan, `"Authorization": "<redacted>"`) {
		t.Errorf("CLI plan: exit %d %s %s", exit, cliPlan, errOut)
	}
	seen.WriteString(cliPlan)

	stopped = true
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(dataDir, "pushbackd.db"))
	if err != nil {
		t.Fatal(err)
	}
	var logText strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&logText, "%s %v\n", e.Message, e.ContextMap())
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the observer is not the app's logger")
	}

	mu.Lock()
	if len(received) != 2 || received[0] != "Basic "+basic || received[1] != "Basic "+basic {
		t.Errorf("the downstream received %q, want the real header twice", received)
	}
	mu.Unlock()

	needles := map[string]string{"the header's credentials": basic}
	for name, s := range map[string]string{"user": user, "pw": pw} {
		b := []byte(s)
		needles[name] = s
		needles[name+" in base64"] = base64.StdEncoding.EncodeToString(b)
		needles[name+" in raw url base64"] = base64.RawURLEncoding.EncodeToString(b)
		needles[name+" in hex"] = hex.EncodeToString(b)
		needles[name+" query-escaped"] = url.QueryEscape(s)
	}
	places := map[string]string{"the admin API and the CLI": seen.String(), "the logs": logText.String(), "the bbolt file": string(db)}
	for place, text := range places {
		for what, needle := range needles {
			if i := strings.Index(text, needle); i >= 0 {
				t.Errorf("%s hold %s: …%s…", place, what, text[max(0, i-60):min(len(text), i+len(needle)+20)])
			}
		}
	}
}
