package app

import (
	"encoding/json"
	"strings"
	"testing"
)

// draftAnswers is the answers saga with its answer's status edited: a draft, not applied.
var draftAnswers = strings.Replace(sagaYAML["answers"], "status: 201", "status: 299", 1)

const answersTests = `cases:
  - name: the task id comes back
    request: {partner: acme, endpoint: answers, body: {loan: L-3}}
    mocks:
      call: [{status: 200, body: {id: T-1}}]
    expect:
      answer: {status: 299, body: {task: T-1, loan: L-3}}
      requests:
        call: [{method: POST, body: {loan: L-3}}]
`

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSagaDraftsArePlannedAndTestedWithoutApplying: POST /sagas/{name}/plan and /test take
// a saga that is not applied, answer with the plan or the test results, refuse a broken
// draft with 422 and positioned errors, and leave the running saga as it was.
func TestSagaDraftsArePlannedAndTestedWithoutApplying(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)

	t.Run("a draft plan renders later steps from the outputs given", func(t *testing.T) {
		p := c.json("POST", "/admin/v1/sagas/answers/plan", jsonBody(t, map[string]any{
			"saga": draftAnswers, "body": map[string]any{"loan": "L-9"},
			"outputs": map[string]any{"call": map[string]any{"status": 200, "body": map[string]any{"id": "T-5"}}},
		}), 200)
		ans, _ := p["answer"].(map[string]any)
		body, _ := ans["body"].(map[string]any)
		if p["ends"] != "respond at answer" || ans["status"] != 299.0 || body["task"] != "T-5" {
			t.Errorf("plan: %v", p)
		}
	})
	t.Run("a draft that does not compile is a 422 with its position in the saga's file, named as validate names it", func(t *testing.T) {
		for _, path := range []string{"/admin/v1/sagas/answers/plan", "/admin/v1/sagas/answers/test"} {
			out := c.json("POST", path, jsonBody(t, map[string]any{"saga": "name: answers\nsteps:\n  - name: a\n    set: {x: '${ 1 + }'}\n"}), 422)
			errs, _ := out["errors"].([]any)
			if len(errs) == 0 || errs[0].(map[string]any)["line"] != 4.0 || errs[0].(map[string]any)["file"] != "sagas/answers.yaml" {
				t.Errorf("%s: %v", path, out)
			}
		}
	})
	t.Run("a draft of another saga is refused", func(t *testing.T) {
		out := c.json("POST", "/admin/v1/sagas/answers/test", jsonBody(t, map[string]any{"saga": sagaYAML["fails"], "tests": answersTests}), 422)
		if !strings.Contains(jsonBody(t, out["errors"]), `name \"fails\" does not match the file name \"answers.yaml\"`) {
			t.Errorf("%v", out)
		}
	})
	t.Run("a draft passes the cases written for it", func(t *testing.T) {
		out := c.json("POST", "/admin/v1/sagas/answers/test", jsonBody(t, map[string]any{"saga": draftAnswers, "tests": answersTests}), 200)
		if out["passed"] != 1.0 || out["failed"] != 0.0 {
			t.Errorf("%v", out)
		}
	})
	t.Run("the running saga fails the same cases, each difference named", func(t *testing.T) {
		out := c.json("POST", "/admin/v1/sagas/answers/test", jsonBody(t, map[string]any{"tests": answersTests}), 200)
		res, _ := out["results"].([]any)
		if out["failed"] != 1.0 || len(res) != 1 {
			t.Fatalf("%v", out)
		}
		f := res[0].(map[string]any)["failures"].([]any)[0].(map[string]any)
		if f["path"] != "answer.status" || f["got"] != 201.0 || f["want"] != 299.0 {
			t.Errorf("failure %v", f)
		}
	})
	t.Run("test cases that do not parse are a 422 with their position", func(t *testing.T) {
		out := c.json("POST", "/admin/v1/sagas/answers/test", jsonBody(t, map[string]any{"tests": "cases:\n  - name: x\n    expect: {stauts: ok}\n"}), 422)
		errs, _ := out["errors"].([]any)
		if len(errs) == 0 || errs[0].(map[string]any)["line"] != 3.0 || errs[0].(map[string]any)["file"] != "tests/answers.yaml" {
			t.Errorf("%v", out)
		}
	})
	t.Run("a saga without a test file and no cases posted is a 404 that says what to send", func(t *testing.T) {
		out := c.json("POST", "/admin/v1/sagas/answers/test", "", 404)
		if !strings.Contains(out["error"].(string), `post the cases as "tests"`) {
			t.Errorf("%v", out)
		}
	})
	t.Run("nothing was applied", func(t *testing.T) {
		if code, out := post(t, a, "answers", `{"loan":"L-1"}`); code != 201 {
			t.Errorf("the running saga answers %d %v, want its own 201", code, out)
		}
		if v := c.json("GET", "/admin/v1/sagas/answers/versions", "", 200); strings.Contains(jsonBody(t, v), "299") {
			t.Errorf("a version holds the draft: %v", v)
		}
	})
}
