package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/internal/sigfixtures"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	t.Run("the demo config is valid", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "validate", "-config", "../../configs/pushbackd.yaml")
		if code != 0 || !strings.Contains(out, "valid (1 partners") {
			t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
		}
	})
	t.Run("a bad config exits 1 with every error as file:line:col", func(t *testing.T) {
		dir := t.TempDir()
		mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "listen: nowhere\nlog: {level: chatty}\n")
		mustWrite(t, filepath.Join(dir, "partners/a.yaml"), "id: a\nendpoints: [{name: e, saga: gone, security: {method: bearer, tokens: [{value: t}]}}]\n")
		code, _, errOut := runCLI(t, "", "validate", "-config", filepath.Join(dir, "pushbackd.yaml"))
		if code != 1 {
			t.Fatalf("exit %d", code)
		}
		for _, want := range []string{"pushbackd.yaml:1:9: listen", "pushbackd.yaml:2:14: log.level", "a.yaml:2:13: ", `saga "gone" not found in sagas_dir (there are none)`, "3 problem(s) found"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
	})
	t.Run("a setting the egress policy refuses is a warning with file:line:col, not a failure", func(t *testing.T) {
		dir := t.TempDir()
		mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "listen: 127.0.0.1:0\n")
		mustWrite(t, filepath.Join(dir, "sagas/echo.yaml"), "name: echo\nsteps:\n  - {name: a, respond: {status: 200}}\n")
		mustWrite(t, filepath.Join(dir, "partners/a.yaml"), "id: a\nsettings:\n  crm_url: http://192.168.10.4:9000\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n")
		code, out, errOut := runCLI(t, "", "validate", "-config", filepath.Join(dir, "pushbackd.yaml"))
		if code != 0 || !strings.Contains(out, "valid (1 partners, 1 endpoints, 1 sagas), 1 warning(s)") {
			t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
		}
		want := filepath.Join(dir, "partners/a.yaml") + ":3:12: warning: settings.crm_url: http steps calling http://192.168.10.4:9000 will fail: egress refused: 192.168.10.4 is a private address: add it to egress.allow\n"
		if errOut != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
		}
	})
	t.Run("flags may follow the command's arguments", func(t *testing.T) {
		if code, _, errOut := runCLI(t, "", "validate", "-config=../../configs/pushbackd.yaml"); code != 0 {
			t.Fatal(errOut)
		}
	})
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The signature must equal what openssl computed for the same body and key.
func TestSignMatchesOpenSSL(t *testing.T) {
	fixtures, err := sigfixtures.Load("../../testdata/signatures")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUSHBACKD_TEST_SIGNING_KEY", "encompass-signing-key-0001")
	checked := 0
	for _, f := range fixtures {
		if f.Key != "encompass-signing-key-0001" || f.File == "one-mib.bin" {
			continue
		}
		args := []string{"sign", "-secret-env", "PUSHBACKD_TEST_SIGNING_KEY"}
		switch f.Kind {
		case "base64":
		case "hex":
			args = append(args, "-encoding", "hex")
		case "hex-prefixed":
			args = append(args, "-encoding", "hex", "-prefix", "sha256=")
		default:
			continue
		}
		body, err := os.ReadFile("../../testdata/signatures/" + f.File)
		if err != nil {
			t.Fatal(err)
		}
		// From stdin and from -file, which may come after the other flags or before them.
		for _, a := range [][]string{args, append(args, "-file", "../../testdata/signatures/"+f.File), append([]string{"sign", "-file", "../../testdata/signatures/" + f.File}, args[1:]...)} {
			stdin := ""
			if !strings.Contains(strings.Join(a, " "), "-file") {
				stdin = string(body)
			}
			code, out, errOut := runCLI(t, stdin, a...)
			if code != 0 || strings.TrimSpace(out) != f.Value {
				t.Errorf("%s %s: exit %d, got %q want %q (%s)", f.File, f.Kind, code, out, f.Value, errOut)
			}
			checked++
		}
	}
	if checked < 9 {
		t.Fatalf("only %d signatures checked", checked)
	}
}

func TestSignRefusesAMissingSecret(t *testing.T) {
	if code, _, errOut := runCLI(t, "x", "sign", "-secret-env", "PUSHBACKD_TEST_SURELY_UNSET"); code != 1 || !strings.Contains(errOut, "is not set") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "x", "sign"); code != 2 {
		t.Errorf("sign without a secret source: exit %d", code)
	}
}

// A jwt endpoint verifying HS256 with its own secrets needs no key file: curl signs the
// token with the endpoint's secret, as sign does for the other HMAC methods.
func TestCurlSignsAnHMACJWTEndpointsTokenWithItsSecret(t *testing.T) {
	requireTools(t, "bash", "curl")
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "listen: 127.0.0.1:0\n")
	mustWrite(t, filepath.Join(dir, "sagas/ok.yaml"), "name: ok\nsteps:\n  - {name: a, respond: {status: 200, body: {ok: true}}}\n")
	mustWrite(t, filepath.Join(dir, "partners/h.yaml"), "id: h\nendpoints:\n  - name: jwths\n    saga: ok\n    mode: sync\n"+
		"    security: {method: jwt, secrets: [{value: "+strings.Repeat("s", 32)+"}], algorithms: [HS256], issuer: https://idp.example/, audience: pushbackd}\n")
	cfgPath := filepath.Join(dir, "pushbackd.yaml")
	a, _ := startConfig(t, cfgPath)
	body := filepath.Join(dir, "body.json")
	mustWrite(t, body, `{"loan":"L-1"}`)
	code, cmd, errOut := runCLI(t, "", "curl", "h/jwths", "-file", body, "-config", cfgPath, "-url", "http://"+a.Addr())
	if code != 0 || !strings.Contains(cmd, "'Authorization: Bearer ey") {
		t.Fatalf("curl: exit %d: %s%s", code, cmd, errOut)
	}
	out, err := exec.Command("bash", "-c", strings.TrimSpace(cmd)+" -w '\\n%{http_code}'").Output()
	if err != nil {
		t.Fatalf("running %s: %v", cmd, err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); lines[len(lines)-1] != "200" {
		t.Fatalf("%s\nanswered %s", cmd, out)
	}
}

func TestCurlPrintsACommandWithTheEndpointsCredentials(t *testing.T) {
	cases := []struct {
		target string
		want   []string
	}{
		{"acme/retail/snapdocs", []string{"'http://127.0.0.1:8080/pushback/acme/retail/snapdocs'", "'Authorization: Basic ", "'Content-Type: application/json'", "--data-binary '@"}},
		{"acme/encompass", []string{"'Elli-Signature: "}},
		{"acme/events", []string{"'Webhook-Id: msg_", "'Webhook-Signature: v1,", "'Webhook-Timestamp: "}},
		{"acme/crm", []string{"'Access-Token: demo-access-token'", "'Access-Secret: demo-access-secret'"}},
		{"acme/stripe", []string{"'Stripe-Signature: t="}},
		{"acme/slack", []string{"'X-Slack-Request-Timestamp: ", "'X-Slack-Signature: v0="}},
		{"acme/oauth2", []string{"ACCESS_TOKEN=$(curl -sS -X POST 'http://127.0.0.1:8080/oauth/acme/token' -u 'demo-client:demo-client-secret' -d grant_type=client_credentials", `-H "Authorization: Bearer $ACCESS_TOKEN"`}},
	}
	body := "../../testdata/payloads/snapdocs-preview-available.json"
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "curl", tc.target, "-file", body, "-config", "../../configs/pushbackd.yaml")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	t.Run("an unknown endpoint is an error", func(t *testing.T) {
		if code, _, errOut := runCLI(t, "", "curl", "acme/nothing", "-file", body, "-config", "../../configs/pushbackd.yaml"); code != 1 || !strings.Contains(errOut, "no endpoint acme/nothing") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("a malformed target is a usage error", func(t *testing.T) {
		if code, _, _ := runCLI(t, "", "curl", "acme", "-file", body); code != 2 {
			t.Errorf("exit %d", code)
		}
	})
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errOut := runCLI(t, "", "launch"); code != 2 || !strings.Contains(errOut, `unknown command "launch"`) {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// serve must refuse an invalid config with the errors, and exit non-zero.
func TestServeRefusesAnInvalidConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "listen: 127.0.0.1:0\nbogus: 1\n")
	out, err := exec.Command(bin, "serve", "-config", filepath.Join(dir, "pushbackd.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `pushbackd.yaml:2:1: unknown key "bogus"`) {
		t.Fatalf("err %v, output %s", err, out)
	}
}

func TestPlanShowsStepsWithoutCallingAnything(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "pushbackd.yaml"), "listen: 127.0.0.1:0\n")
	mustWrite(t, filepath.Join(dir, "partners/acme.yaml"), `id: acme
settings: {crm_url: "http://127.0.0.1:1"}
secrets: {crm_token: {value: plan-secret-value}}
endpoints: [{name: hook, saga: notify, security: {method: bearer, tokens: [{value: t}]}}]
`)
	mustWrite(t, filepath.Join(dir, "sagas/notify.yaml"), `name: notify
steps:
  - name: only_milestones
    when: body.eventType != "milestone"
    respond: {status: 200, body: {ignored: true}}
  - name: crm
    http:
      method: POST
      url: ${ settings.crm_url }/tasks
      headers: {Authorization: "Bearer ${ secret('crm_token') }"}
      json: {loan: "${ body.meta.resourceId }"}
`)
	cfg := filepath.Join(dir, "pushbackd.yaml")
	sample := filepath.Join(dir, "sample.json")
	mustWrite(t, sample, `{"body": {"eventType": "milestone", "meta": {"resourceId": "L-1"}}}`)

	code, out, errOut := runCLI(t, "", "plan", "notify", "-file", sample, "-config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"decision": "skip"`, `"decision": "run"`, `"url": "http://127.0.0.1:1/tasks"`, `"loan": "L-1"`, `"Authorization": "<redacted>"`} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "plan-secret-value") {
		t.Error("plan shows a secret")
	}

	// A string body is the raw body, parsed per its Content-Type as the gateway would.
	code, out, _ = runCLI(t, `{"body": "{\"eventType\": \"update\"}", "headers": {"Content-Type": "application/json"}}`, "plan", "-config", cfg, "notify")
	if code != 0 || !strings.Contains(out, `"ends": "respond at only_milestones"`) {
		t.Errorf("a raw JSON body: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "{}", "plan", "nothing", "-config", cfg); code != 1 || !strings.Contains(errOut, `no saga "nothing"`) {
		t.Errorf("unknown saga: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, `{"bdy": {}}`, "plan", "notify", "-config", cfg); code != 1 || !strings.Contains(errOut, `unknown field "bdy"`) {
		t.Errorf("misspelt sample key: exit %d %s", code, errOut)
	}
}

// postRun posts body to /pushback/<path> on addr with a bearer token and returns the run
// id of the answer.
func postRun(t *testing.T, addr, path, token, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/pushback/"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var accepted struct {
		RunID string `json:"run_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&accepted); err != nil || accepted.RunID == "" {
		t.Fatalf("POST /pushback/%s: %d, no run id (%v)", path, resp.StatusCode, err)
	}
	return accepted.RunID
}

func TestRunsCommandTalksToTheAdminAPI(t *testing.T) {
	a, dataDir, cfgPath := startDemoWithData(t)
	// One async run through the demo's loans endpoint.
	accepted := struct{ RunID string }{postRun(t, a.Addr(), "acme/loans", "demo-bearer-token", `{"eventId":"cli-1","eventType":"milestone"}`)}
	common := []string{"-config", cfgPath, "-admin", "http://" + a.AdminAddr(), "-token-file", filepath.Join(dataDir, "admin.token")}

	deadline := time.Now().Add(5 * time.Second)
	for {
		code, out, errOut := runCLI(t, "", append([]string{"runs", "list", "-endpoint", "loans"}, common...)...)
		if code != 0 {
			t.Fatalf("list: exit %d: %s", code, errOut)
		}
		if strings.Contains(out, accepted.RunID) && strings.Contains(out, "succeeded") {
			if !strings.HasPrefix(out, "RUN") {
				t.Errorf("list is not a table:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run never listed as succeeded:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, errOut := runCLI(t, "", append([]string{"runs", "show", accepted.RunID}, common...)...)
	if code != 0 || !strings.Contains(out, "status    succeeded") || !strings.Contains(out, "answer") || !strings.Contains(out, "STEP") {
		t.Errorf("show: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "", append([]string{"runs", "show", accepted.RunID, "-json"}, common...)...)
	var shown map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["id"] != accepted.RunID {
		t.Errorf("show -json: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", append([]string{"runs", "replay", accepted.RunID}, common...)...)
	if code != 0 || !strings.Contains(out, "replaying "+accepted.RunID) {
		t.Errorf("replay: exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "", append([]string{"runs", "show", accepted.RunID}, common...)...); code != 0 || !strings.Contains(out, "replays   ") {
		t.Errorf("show after a replay lists no replays: exit %d\n%s", code, out)
	}
	// retry and cancel reach the server, which refuses both for a run that succeeded.
	for _, tc := range []struct{ verb, want string }{
		{"retry", "only a failed run can be retried (HTTP 409)"},
		{"cancel", "only a queued, waiting or running run can be cancelled (HTTP 409)"},
	} {
		if code, _, errOut := runCLI(t, "", append([]string{"runs", tc.verb, accepted.RunID}, common...)...); code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("runs %s of a succeeded run: exit %d %s, want 1 and %q", tc.verb, code, errOut, tc.want)
		}
	}
	if code, _, errOut := runCLI(t, "", append([]string{"runs", "show", "nope"}, common...)...); code != 1 || !strings.Contains(errOut, "no run nope") {
		t.Errorf("unknown run: exit %d %s", code, errOut)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.token")
	mustWrite(t, wrong, "not-the-token\n")
	bad := []string{"-config", cfgPath, "-admin", "http://" + a.AdminAddr(), "-token-file", wrong}
	if code, _, errOut := runCLI(t, "", append([]string{"runs", "list"}, bad...)...); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("wrong token: exit %d %s", code, errOut)
	}
}

// Every endpoint of the demo, whatever its method or preset, answers 200 to the command
// `curl` prints: the printed command is run with bash and curl against a started demo.
func TestCurlCommandsWorkForEveryDemoEndpoint(t *testing.T) {
	requireTools(t, "bash", "curl")
	a := startDemo(t)
	cfg, err := config.Load("../../configs/pushbackd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, p := range cfg.Partners {
		for _, e := range p.Endpoints {
			targets = append(targets, p.ID+"/"+e.Name)
		}
		for _, s := range p.Sites {
			for _, e := range s.Endpoints {
				targets = append(targets, p.ID+"/"+s.ID+"/"+e.Name)
			}
		}
	}
	if len(targets) < 11 {
		t.Fatalf("only %d demo endpoints", len(targets))
	}
	body := "../../testdata/payloads/encompass-loan-milestone.json"
	for _, target := range targets {
		t.Run(target+" accepts the printed command", func(t *testing.T) {
			args := []string{"curl", target, "-file", body, "-config", "../../configs/pushbackd.yaml", "-url", "http://" + a.Addr()}
			if strings.HasSuffix(target, "/jwt") {
				// The demo's identity provider key: curl signs a token with it.
				args = append(args, "-jwt-key", "../../configs/partners/keys/demo-idp.key")
			}
			code, cmd, errOut := runCLI(t, "", args...)
			if code != 0 {
				t.Fatalf("curl: exit %d: %s", code, errOut)
			}
			out, err := exec.Command("bash", "-c", strings.TrimSpace(cmd)+" -w '\\n%{http_code}'").Output()
			if err != nil {
				t.Fatalf("running %s: %v", cmd, err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if status := lines[len(lines)-1]; status != "200" {
				t.Fatalf("%s\nanswered %s: %s", cmd, status, out)
			}
		})
	}
}
