package app

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pushbackd/pushbackd/store"
)

const runSchema = "../configs/schema/run.schema.json"

// compensationApp runs two async sagas that reserve, then fail: "undone" undoes the
// reservation, "half" cannot (its compensation answers 500 on both tries).
func compensationApp(t *testing.T) *App {
	t.Helper()
	down := downstream(t)
	return startWith(t, map[string]string{
		"pushbackd.yaml": "egress: {allow: [127.0.0.1]}\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down.URL + `"}
endpoints:
  - {name: undone, saga: undone, security: {method: bearer, tokens: [{value: t}]}}
  - {name: half, saga: half, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/undone.yaml": `name: undone
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/ok"}
    compensate: {http: {method: DELETE, url: "${ settings.down }/ok"}}
  - name: call
    http: {url: "${ settings.down }/broken"}
`,
		"sagas/half.yaml": `name: half
steps:
  - name: reserve
    http: {method: POST, url: "${ settings.down }/ok"}
    retry: {attempts: 2, backoff: 10ms}
    compensate: {http: {method: DELETE, url: "${ settings.down }/broken"}}
  - name: call
    http: {url: "${ settings.down }/broken"}
`,
	})
}

func TestACompensationThatFailsIsToldApartFromACleanUndo(t *testing.T) {
	a := compensationApp(t)
	c := newAdmin(t, a)
	ids := map[string]string{}
	for _, ep := range []string{"undone", "half"} {
		code, body := post(t, a, ep, `{}`)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", ep, code, body)
		}
		ids[ep] = body["run_id"].(string)
	}
	undone, half := finishedRun(t, c, ids["undone"]), finishedRun(t, c, ids["half"])

	t.Run("a run whose every compensation succeeded ends compensated", func(t *testing.T) {
		if undone["status"] != "compensated" {
			t.Errorf("status %v: %v", undone["status"], undone)
		}
	})
	t.Run("a run whose compensation failed after its retries ends compensation_failed and shows which", func(t *testing.T) {
		if half["status"] != "compensation_failed" || !strings.Contains(half["error"].(string), "call") {
			t.Fatalf("status %v error %v", half["status"], half["error"])
		}
		comps := half["result"].(map[string]any)["compensations"].([]any)
		comp := comps[0].(map[string]any)
		if len(comps) != 1 || comp["name"] != "reserve" || comp["status"] != "failed" || comp["attempts"] != 2.0 || comp["error"] == "" {
			t.Errorf("compensations %v", comps)
		}
	})
	t.Run("the admin API lists the runs by compensation_failed", func(t *testing.T) {
		for status, want := range map[string]string{"compensation_failed": ids["half"], "compensated": ids["undone"]} {
			runs := c.json("GET", "/admin/v1/runs?status="+status, "", 200)["runs"].([]any)
			if len(runs) != 1 || runs[0].(map[string]any)["id"] != want {
				t.Errorf("status=%s: %v, want only %s", status, runs, want)
			}
		}
	})
	t.Run("an unknown status is refused with the list of statuses", func(t *testing.T) {
		msg := c.json("GET", "/admin/v1/runs?status=half_undone", "", 400)["error"].(string)
		if !strings.Contains(msg, `"half_undone"`) || !strings.Contains(msg, "compensated, compensation_failed") {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("pushbackd_runs_total counts compensation_failed apart from compensated", func(t *testing.T) {
		want := map[string]float64{
			`pushbackd_runs_total{endpoint="undone",partner="acme",saga="undone",status="compensated"}`:     1,
			`pushbackd_runs_total{endpoint="half",partner="acme",saga="half",status="compensation_failed"}`: 1,
			`pushbackd_runs_total{endpoint="half",partner="acme",saga="half",status="compensated"}`:         0,
		}
		m := scrape(t, c)
		for deadline := time.Now().Add(5 * time.Second); m[`pushbackd_runs_total{endpoint="half",partner="acme",saga="half",status="compensation_failed"}`] < 1 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			m = scrape(t, c)
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
	})
	t.Run("the run views match run.schema.json, whose status enum is every status", func(t *testing.T) {
		comp := jsonschema.NewCompiler()
		comp.AssertFormat()
		runS, err := comp.Compile(runSchema)
		if err != nil {
			t.Fatal(err)
		}
		pageS, err := comp.Compile(runSchema + "#/$defs/page")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []struct {
			path   string
			schema *jsonschema.Schema
		}{
			{"/admin/v1/runs/" + ids["half"], runS},
			{"/admin/v1/runs/" + ids["undone"], runS},
			{"/admin/v1/runs?status=compensation_failed", pageS},
			{"/admin/v1/runs", pageS},
		} {
			code, body, _ := c.do("GET", v.path, c.token, "")
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
			if code != 200 || err != nil {
				t.Fatalf("GET %s: %d %v", v.path, code, err)
			}
			if err := v.schema.Validate(inst); err != nil {
				t.Errorf("GET %s does not match the schema: %v\n%s", v.path, err, body)
			}
		}
		raw, err := os.ReadFile(runSchema)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Defs struct {
				Status struct {
					Enum []store.Status `json:"enum"`
				} `json:"status"`
			} `json:"$defs"`
		}
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if got := doc.Defs.Status.Enum; !slices.Equal(got, store.Statuses()) {
			t.Errorf("schema status enum %v, want %v", got, store.Statuses())
		}
	})
}
