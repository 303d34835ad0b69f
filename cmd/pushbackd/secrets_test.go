package main

import (
	"bytes"
	"context"
	"encoding/base64"
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
	"go.uber.org/zap/zapcore"

	"github.com/pushbackd/pushbackd/app"
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/security"
)

// syncBuffer is a log sink the server writes to while the test reads it at the end.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Sync() error { return nil }

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNoSecretLeaks runs every security method, right and wrong, and a saga that uses a
// partner secret, then looks for every secret and every credential the senders sent in
// the logs (debug level), the bbolt file, the admin API's answers, /metrics and every
// answer a sender got.
func TestNoSecretLeaks(t *testing.T) {
	echoHeaders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A careless downstream that echoes the request's headers back.
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"seen": r.Header})
	}))
	defer echoHeaders.Close()

	secrets := map[string]string{
		"basic":   "basic-pa:ss-Z9q",
		"token":   "tok-value-Z9q",
		"tsecret": "tok-secret-Z9q",
		"sig":     "sig-key-Z9q",
		"whsec":   "whsec_" + base64.StdEncoding.EncodeToString([]byte("webhooks-key-Z9q-32-bytes-long!!")),
		"api":     "api-key-Z9q",
		"bearer":  "bearer-token-Z9q",
		"crm":     "crm-token-Z9q",
		"admin":   "admin-token-Z9q-0123456789abcdefghij",
	}
	dir := t.TempDir()
	t.Setenv("PUSHBACKD_TEST_ADMIN", secrets["admin"])
	t.Setenv("PUSHBACKD_TEST_BEARER", secrets["bearer"])
	mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "admin: {token: {env: PUSHBACKD_TEST_ADMIN}}\nlimits: {auth_failures: {per_client: 1000}}\nlog: {level: debug}\negress: {allow: [127.0.0.1]}\n")
	mustWrite(t, filepath.Join(dir, "keyfile"), secrets["api"]+"\n")
	mustWrite(t, filepath.Join(dir, "partners/acme.yaml"), `id: acme
settings: {crm: "`+echoHeaders.URL+`"}
secrets: {crm_token: {value: "`+secrets["crm"]+`"}}
endpoints:
  - {name: basic, saga: notify, security: {method: basic, username: snap, password: {value: "`+secrets["basic"]+`"}}}
  - {name: token, saga: notify, mode: sync, security: {method: token, token: {value: `+secrets["token"]+`}, secret: {value: `+secrets["tsecret"]+`}}}
  - {name: sig, saga: notify, security: {method: signature, header: Elli-Signature, secrets: [{value: `+secrets["sig"]+`}]}}
  - {name: hooks, saga: notify, security: {method: standard_webhooks, secrets: [{value: "`+secrets["whsec"]+`"}]}}
  - {name: key, saga: notify, security: {method: api_key, query: key, keys: [{file: ../keyfile}]}}
  - {name: bearer, saga: notify, mode: sync, security: {method: bearer, tokens: [{env: PUSHBACKD_TEST_BEARER}]}}
`)
	mustWrite(t, filepath.Join(dir, "sagas/notify.yaml"), `name: notify
steps:
  - name: crm
    http:
      method: POST
      url: ${ settings.crm }/tasks
      headers: {Authorization: "Bearer ${ secret('crm_token') }", X-Signed: "${ hmac_sha256(secret('crm_token'), raw) }"}
      json: {event: "${ body?.event ?? 'none' }"}
  - name: fail_loudly
    when: body?.event == "explode"
    fail: {message: "exploded with ${ secret('crm_token') }"}
`)
	logs := &syncBuffer{}
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zapcore.DebugLevel))
	dataDir := filepath.Join(dir, "data")
	a, err := app.New(app.Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: dataDir, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "pushbackd.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	var seen bytes.Buffer // everything any client was told
	sent := []string{}    // every credential value a sender put on the wire
	send := func(endpoint string, h http.Header, q string, body string) {
		req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/pushback/acme/"+endpoint+q, strings.NewReader(body))
		req.Header = h
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen.Write(b)
		for k, v := range resp.Header {
			seen.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	for _, p := range cfg.Partners {
		for _, e := range p.Endpoints {
			sec := e.Security.Resolved()
			for _, body := range []string{`{"event":"ok"}`, `{"event":"explode"}`} {
				h, q, err := security.Sign(sec, []byte(body), "msg_1", time.Now())
				if err != nil {
					t.Fatal(err)
				}
				for k, vs := range h {
					if k != "Webhook-Id" && k != "Webhook-Timestamp" { // identify, not authenticate
						sent = append(sent, vs...)
					}
				}
				for _, vs := range q {
					sent = append(sent, vs...)
				}
				query := ""
				if len(q) > 0 {
					query = "?" + q.Encode()
				}
				send(e.Name, h, query, body)
				// The same credential sent to the wrong endpoint, and a near miss.
				send("bearer", h.Clone(), query, body)
				wrong := h.Clone()
				for k := range wrong {
					if v := wrong.Get(k); len(v) > 4 && !strings.HasPrefix(strings.ToLower(k), "webhook-i") && !strings.HasPrefix(strings.ToLower(k), "webhook-t") {
						wrong.Set(k, v[:len(v)-2]+"xy")
						sent = append(sent, wrong.Get(k))
					}
				}
				send(e.Name, wrong, query+"x", body)
			}
		}
	}
	// Wait for the async runs to finish, then read everything an operator can see.
	unfinished := func() int {
		n := 0
		for _, st := range []string{"queued", "running", "waiting"} {
			req, _ := http.NewRequest("GET", "http://"+a.AdminAddr()+"/admin/v1/runs?status="+st, nil)
			req.Header.Set("Authorization", "Bearer "+secrets["admin"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var page struct{ Runs []json.RawMessage }
			_ = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			n += len(page.Runs)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); unfinished() > 0; {
		if time.Now().After(deadline) {
			t.Fatal("runs did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var adminGet func(path string)
	adminGet = func(path string) {
		req, _ := http.NewRequest("GET", "http://"+a.AdminAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+secrets["admin"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen.Write(b)
		if path == "/admin/v1/runs?limit=1000" {
			var page struct{ Runs []struct{ ID string } }
			_ = json.Unmarshal(b, &page)
			if len(page.Runs) < 12 {
				t.Errorf("only %d runs recorded", len(page.Runs))
			}
			for _, r := range page.Runs {
				adminGet("/admin/v1/runs/" + r.ID)
			}
		}
	}
	for _, path := range []string{"/admin/v1/endpoints", "/admin/v1/sagas", "/admin/v1/sagas/notify", "/admin/v1/runs?limit=1000", "/metrics", "/readyz"} {
		adminGet(path)
	}
	if !strings.Contains(seen.String(), `"status":"succeeded"`) && !strings.Contains(seen.String(), `"succeeded"`) {
		t.Error("no run succeeded: the scenario did not exercise the sagas")
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(dataDir, "pushbackd.db"))
	if err != nil {
		t.Fatal(err)
	}

	needles := map[string]string{}
	for name, s := range secrets {
		needles["secret "+name] = s
	}
	needles["basic user:pass in base64"] = base64.StdEncoding.EncodeToString([]byte("snap:" + secrets["basic"]))
	for _, v := range sent {
		v = strings.TrimPrefix(strings.TrimPrefix(v, "Basic "), "Bearer ")
		if len(v) >= 8 && v != "msg_1" {
			needles["sent credential "+v] = v
		}
	}
	places := map[string]string{"logs": logs.String(), "bbolt file": string(db), "admin API, metrics and answers": seen.String()}
	for place, text := range places {
		for what, needle := range needles {
			if strings.Contains(text, needle) {
				i := strings.Index(text, needle)
				t.Errorf("%s contains %s: …%s…", place, what, text[max(0, i-80):min(len(text), i+len(needle)+20)])
			}
		}
	}
	if len(logs.String()) < 1000 || len(db) == 0 {
		t.Fatal("nothing was logged or stored: the test would prove nothing")
	}
	t.Logf("%d needles, absent from %d bytes of logs, a %d-byte database and %d bytes of API answers", len(needles), len(logs.String()), len(db), seen.Len())
}
