package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fetchApp runs an app whose sync endpoint "fetch" calls a redirector with the URL in the
// body and answers with what it got: the saga a sender would use to read whatever pushbackd
// can reach. A url template cannot take its host from the body, so the sender's way in is
// an allowed downstream that redirects where the body says. Its egress.allow names all of
// loopback and 0.0.0.0, so only the always-refused rules stand between a sender and
// pushbackd's own listeners.
func fetchApp(t *testing.T, adminListen, redirector string) *App {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml": "data_dir: " + filepath.Join(dir, "data") + "\n" +
			`egress: {allow: [127.0.0.0/8, 0.0.0.0, localhost, "::1", "::"]}` + "\n",
		"partners/acme.yaml": "id: acme\nsettings: {redirector: \"" + redirector + "\"}\nendpoints: [{name: fetch, saga: fetch, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/fetch.yaml": `name: fetch
steps:
  - name: get
    http: {url: "${ settings.redirector }/go?to=${ body.url }"}
  - name: answer
    respond: {status: 200, body: {got: "${ steps.get.output.body }"}}
`,
	})
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: adminListen, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

func TestSagasCannotReachPushbackdsOwnListeners(t *testing.T) {
	reachable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "downstream content")
	}))
	t.Cleanup(reachable.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	for _, bind := range []string{"127.0.0.1:0", "0.0.0.0:0", "[::]:0"} {
		a := fetchApp(t, bind, redirector.URL)
		c := newAdmin(t, a)
		_, adminPort, _ := net.SplitHostPort(a.AdminAddr())
		_, pushbackPort, _ := net.SplitHostPort(a.Addr())
		cases := []struct{ name, url, want string }{
			{"the admin listener's metrics", "http://127.0.0.1:" + adminPort + "/metrics", "127.0.0.1:" + adminPort + " is pushbackd's own admin listener: always refused"},
			{"the admin listener through 0.0.0.0", "http://0.0.0.0:" + adminPort + "/readyz", "0.0.0.0:" + adminPort + " is pushbackd's own admin listener: always refused"},
			// Where localhost is ::1 too, that address may be tried first and refuse the
			// connection; either way the sender reads nothing.
			{"the admin listener through localhost", "http://localhost:" + adminPort + "/healthz", "refused"},
			{"the admin API through another loopback address", "http://127.0.0.2:" + adminPort + "/admin/v1/runs", "127.0.0.2:" + adminPort + " is pushbackd's own admin listener"},
			{"the pushback listener itself", "http://127.0.0.1:" + pushbackPort + "/pushback/acme/fetch", "127.0.0.1:" + pushbackPort + " is pushbackd's own pushback listener: always refused"},
		}
		if bind == "127.0.0.1:0" {
			// Bound to 127.0.0.1 only, 127.0.0.2 reaches nothing: leave it out.
			cases = append(cases[:3], cases[4:]...)
		}
		for _, tc := range cases {
			t.Run(tc.name+" is refused with admin bound to "+bind, func(t *testing.T) {
				code, body := post(t, a, "fetch", `{"url": "`+tc.url+`"}`)
				if code == http.StatusOK {
					t.Fatalf("the sender read %v", body)
				}
				run := finishedRun(t, c, body["run_id"].(string))
				result, _ := run["result"].(map[string]any)
				if msg, _ := result["error"].(string); !strings.Contains(msg, tc.want) {
					t.Errorf("run error %q, want %q; run %v", msg, tc.want, run)
				}
			})
		}
		t.Run("a loopback downstream the list allows is reached with admin bound to "+bind, func(t *testing.T) {
			code, body := post(t, a, "fetch", `{"url": "`+reachable.URL+`"}`)
			if code != http.StatusOK || body["got"] != "downstream content" {
				t.Errorf("%d %v", code, body)
			}
		})
	}
}

// finishedRun is the run's record once it is final: a sync run is answered before its
// record is.
func finishedRun(t *testing.T, c *adminClient, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		run := c.json(http.MethodGet, "/admin/v1/runs/"+id, "", http.StatusOK)
		if st := run["status"]; st != "queued" && st != "running" && st != "waiting" {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not finish: %v", run)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartUpAndReloadWarnAboutSettingsTheEgressPolicyRefuses(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml":     "data_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nsettings:\n  crm_url: http://10.0.0.5:9000\nendpoints: [{name: e, saga: ok, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/ok.yaml":      "name: ok\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	core, logs := observer.New(zapcore.WarnLevel)
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zap.New(core)})
	if err != nil {
		t.Fatalf("a refused setting must not stop start-up: %v", err)
	}
	defer a.Close()
	want := filepath.Join(dir, "partners/acme.yaml") + ":3:12: settings.crm_url: http steps calling http://10.0.0.5:9000 will fail: egress refused: 10.0.0.5 is a private address: add it to egress.allow"
	check := func(when string, n int) {
		t.Helper()
		warned := logs.FilterMessage("a setting's URL is refused by the egress policy").All()
		if len(warned) != n {
			t.Fatalf("%s: %d warnings logged, want %d", when, len(warned), n)
		}
		if got := warned[n-1].ContextMap()["at"]; got != want {
			t.Errorf("%s: logged %q, want %q", when, got, want)
		}
	}
	check("start-up", 1)
	if err := a.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	check("reload", 2)
}
