package saga

import (
	"encoding/json"
	"strings"
	"testing"
)

const retrySaga = `name: s
steps:
  - name: one
    http: {method: POST, url: "https://a.example/one"}
  - name: two
    http: {method: POST, url: "https://a.example/two"}
  - name: three
    http: {method: POST, url: "https://a.example/three"}
`

func parseSaga(t *testing.T, src string) *Saga {
	t.Helper()
	s, errs := Parse("s.yaml", []byte(src))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return s
}

func TestStepsUnchangedComparesTheStepsUpToTheFailedOne(t *testing.T) {
	old := parseSaga(t, retrySaga)
	for _, tc := range []struct {
		name, src, through, wantErr string
	}{
		{"the same version is unchanged", retrySaga, "three", ""},
		{"comments and layout do not count", "# note\n" + strings.ReplaceAll(retrySaga, "{method: POST, ", "{ method: POST, "), "three", ""},
		{"a step after the failed one may change", strings.Replace(retrySaga, "/three", "/3", 1), "two", ""},
		{"a changed earlier step is refused, by name", strings.Replace(retrySaga, "/one", "/1", 1), "three", "step one of saga s changed since the run: replay it instead"},
		{"a changed failed step is refused", strings.Replace(retrySaga, "/two", "/2", 1), "two", "step two of saga s changed"},
		{"a step added before the failed one is refused", strings.Replace(retrySaga, "  - name: one", "  - name: zero\n    log: {message: hi}\n  - name: one", 1), "one", "step one of saga s changed"},
		{"a saga cut short of the failed step is refused", "name: s\nsteps:\n  - name: one\n    http: {method: POST, url: \"https://a.example/one\"}\n", "two", "step two of saga s changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := StepsUnchanged(old, parseSaga(t, tc.src), tc.through)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("err = %v, want none", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRetryStateStartsAtTheFailedStepWithTheRecordedOutputs(t *testing.T) {
	s := parseSaga(t, retrySaga)
	result := func(out1 any) []byte {
		b, _ := json.Marshal(&Result{FailedStep: "three", Error: "three: 500", Steps: []StepRecord{
			{Name: "one", Action: "http", Status: StatusSucceeded, Attempts: 1, Output: out1},
			{Name: "two", Action: "http", Status: StatusSucceeded, Attempts: 2, Output: map[string]any{"status": 200.0}},
			{Name: "three", Action: "http", Status: StatusFailed, Attempts: 3, Error: "500"},
		}, Vars: map[string]any{"v": "x"}})
		return b
	}
	t.Run("the retry starts at the failed step with the others' outputs and the vars", func(t *testing.T) {
		st, err := RetryState(s, s, "new", result(map[string]any{"body": map[string]any{"id": "A"}}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Next != 2 || len(st.Records) != 2 || st.Phase != PhaseForward || st.SagaVersion != s.Version || st.RunID != "new" {
			t.Fatalf("state %+v", st)
		}
		if got := st.Steps["one"].Output.(map[string]any)["body"].(map[string]any)["id"]; got != "A" || st.Steps["two"].Attempts != 2 || st.Vars["v"] != "x" {
			t.Fatalf("steps %+v vars %v", st.Steps, st.Vars)
		}
	})
	for _, tc := range []struct {
		name    string
		result  []byte
		wantErr string
	}{
		{"an output history cut is refused", result("{\"body\":" + "…(truncated, 99999 bytes)"), "too large to keep"},
		{"a result that is not JSON is refused", []byte("{"), "unreadable"},
		{"a result without a failed step is refused", []byte(`{"steps":[{"name":"one","status":"succeeded"}]}`), "no failed step"},
		{"a failed step that is not the last record is refused", []byte(`{"failed_step":"one","steps":[{"name":"one"},{"name":"two"}]}`), "no failed step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RetryState(s, s, "new", tc.result); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
