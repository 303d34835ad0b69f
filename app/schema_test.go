package app

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// loanSchema is what the checked endpoint's senders must send.
const loanSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["eventId", "meta"],
  "properties": {
    "eventId": {"type": "string"},
    "meta": {"type": "object", "required": ["resourceId"], "properties": {"resourceId": {"type": "string", "minLength": 8}}}
  }
}`

func startSchemaApp(t *testing.T) (*App, string) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml": "data_dir: " + filepath.Join(dir, "data") + "\nlimits: {auth_failures: {per_client: 1000}}\n",
		"partners/acme.yaml": `id: acme
endpoints:
  - {name: checked, saga: note, schema: loan.schema.json, security: {method: bearer, tokens: [{value: t}]}}
  - {name: unchecked, saga: note, security: {method: bearer, tokens: [{value: t}]}}
`,
		"partners/loan.schema.json": loanSchema,
		"sagas/note.yaml":           "name: note\nsteps:\n  - {name: seen, set: {seen: true}}\n",
	})
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zaptest.NewLogger(t)})
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
	return a, dir
}

func TestPayloadSchemasRefuseBadBodiesBeforeAnythingIsRecorded(t *testing.T) {
	a, _ := startSchemaApp(t)
	c := newAdmin(t, a)
	good := `{"eventId":"e-1","meta":{"resourceId":"10d191c3-c97b"}}`
	if code, body := post(t, a, "checked", good); code != 200 || body["run_id"] == nil {
		t.Fatalf("a matching body: %d %v", code, body)
	}
	tests := []struct {
		name, body, pointer, reason string
	}{
		{"a missing property is refused with its object's pointer", `{"meta":{"resourceId":"10d191c3-c97b"}}`, "", "missing property 'eventId'"},
		{"a nested value that breaks a rule is refused with its pointer", `{"eventId":"e-2","meta":{"resourceId":"short"}}`, "/meta/resourceId", "minLength"},
		{"a value of the wrong type is refused with its pointer", `{"eventId":7,"meta":{"resourceId":"10d191c3-c97b"}}`, "/eventId", "got number, want string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, a, "checked", tc.body)
			if code != 400 || !strings.Contains(body["message"].(string), "body does not match the endpoint's schema") {
				t.Fatalf("%d %v", code, body)
			}
			errs, _ := body["errors"].([]any)
			if len(errs) == 0 {
				t.Fatalf("no errors in %v", body)
			}
			first := errs[0].(map[string]any)
			if first["pointer"] != tc.pointer || !strings.Contains(first["reason"].(string), tc.reason) {
				t.Fatalf("first error %v, want at %q a reason with %q", first, tc.pointer, tc.reason)
			}
		})
	}
	t.Run("a wrong token is refused as 401 before the schema is looked at", func(t *testing.T) {
		req, _ := http.NewRequest("POST", "http://"+a.Addr()+"/pushback/acme/checked", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("%d, want 401", resp.StatusCode)
		}
	})
	t.Run("an endpoint without a schema takes the same body", func(t *testing.T) {
		if code, body := post(t, a, "unchecked", `{"meta":{}}`); code != 200 {
			t.Fatalf("%d %v", code, body)
		}
	})
	t.Run("an unparseable body is counted apart from a schema failure", func(t *testing.T) {
		if code, _ := post(t, a, "checked", `{"eventId":`); code != 400 {
			t.Fatalf("%d", code)
		}
	})

	t.Run("refused bodies left no run", func(t *testing.T) {
		runs := c.json("GET", "/admin/v1/runs?endpoint=checked", "", 200)["runs"].([]any)
		if len(runs) != 1 {
			t.Fatalf("%d runs of checked, want the one good body's", len(runs))
		}
	})
	t.Run("refusals are counted with reason schema", func(t *testing.T) {
		m := scrape(t, c)
		for k, want := range map[string]float64{
			`pushbackd_requests_total{code="400",endpoint="checked",partner="acme",reason="schema"}`:      3,
			`pushbackd_requests_total{code="400",endpoint="checked",partner="acme",reason="unparseable"}`: 1,
			`pushbackd_requests_total{code="200",endpoint="checked",partner="acme",reason=""}`:            1,
		} {
			if m[k] != want {
				t.Errorf("%s = %v, want %v", k, m[k], want)
			}
		}
	})
	t.Run("operators see the latest refusals, newest first", func(t *testing.T) {
		list := c.json("GET", "/admin/v1/rejections?partner=acme&endpoint=checked", "", 200)["rejections"].([]any)
		if len(list) != 3 {
			t.Fatalf("%d rejections, want 3: %v", len(list), list)
		}
		newest := list[0].(map[string]any)
		problems := newest["problems"].([]any)
		if newest["schema"] != "loan.schema.json" || newest["request_id"] == "" || problems[0].(map[string]any)["pointer"] != "/eventId" {
			t.Fatalf("newest rejection %v", newest)
		}
		if got := c.json("GET", "/admin/v1/rejections?endpoint=checked&limit=1", "", 200)["rejections"].([]any); len(got) != 1 {
			t.Fatalf("limit=1 gave %d", len(got))
		}
		if got := c.json("GET", "/admin/v1/rejections?endpoint=unchecked", "", 200)["rejections"].([]any); len(got) != 0 {
			t.Fatalf("an endpoint without refusals lists %d", len(got))
		}
		if code, _, _ := c.do("GET", "/admin/v1/rejections?limit=0", c.token, ""); code != 400 {
			t.Fatalf("limit=0: %d, want 400", code)
		}
	})
	t.Run("the endpoint listing names the schema", func(t *testing.T) {
		for _, e := range c.json("GET", "/admin/v1/endpoints", "", 200)["endpoints"].([]any) {
			if v := e.(map[string]any); v["endpoint"] == "checked" && v["schema"] != "loan.schema.json" {
				t.Fatalf("endpoint view %v", v)
			}
		}
	})
}

func TestAnEditedSchemaFileIsPickedUpWithoutARestart(t *testing.T) {
	a, dir := startSchemaApp(t)
	body := `{"eventId":"e-1","meta":{"resourceId":"10d191c3-c97b"}}`
	if code, _ := post(t, a, "checked", body); code != 200 {
		t.Fatalf("before the edit: %d", code)
	}
	before := a.Current()
	stricter := strings.Replace(loanSchema, `"required": ["eventId", "meta"]`, `"required": ["eventId", "eventType", "meta"]`, 1)
	if err := os.WriteFile(filepath.Join(dir, "partners/loan.schema.json"), []byte(stricter), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); a.Current() == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the schema edit was not picked up")
		}
	}
	if code, answer := post(t, a, "checked", body); code != 400 || !strings.Contains(answer["message"].(string), "missing property 'eventType'") {
		t.Fatalf("after the edit: %d %v", code, answer)
	}
}
