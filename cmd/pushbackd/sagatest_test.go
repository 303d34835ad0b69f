package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/config"
)

const demoConfig = "../../configs/pushbackd.yaml"

// TestShippedSagasPassTheirTests runs `pushbackd test` on the shipped configuration: every
// shipped saga has a test file and every case passes.
func TestShippedSagasPassTheirTests(t *testing.T) {
	cfg, err := config.Load(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	for name := range cfg.Sagas {
		if _, err := os.Stat(filepath.Join(testsDir(cfg), name+".yaml")); err != nil {
			t.Errorf("shipped saga %s has no tests: %v", name, err)
		}
	}
	code, out, errOut := runCLI(t, "", "test", "-config", demoConfig)
	if code != 0 || errOut != "" || !strings.Contains(out, " 0 failed") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "", "test", "-config", demoConfig, "-json", "forward")
	var res struct {
		Passed, Failed int
		Results        []struct {
			Saga, Case string
			Passed     bool
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Failed != 0 || res.Passed != len(res.Results) || res.Passed == 0 || res.Results[0].Saga != "forward" {
		t.Errorf("-json: exit %d\n%s", code, out)
	}
}

// forwardCase is a test case of the shipped forward saga with expect (and mocks) as given.
func forwardCase(mocks, expect string) string {
	return `saga: forward
cases:
  - name: the case
    request: {partner: acme, endpoint: loans, body: {eventId: e-1}}
    settings: {forward_url: "https://downstream.example.com/in"}
    secrets: {x: secret-value-never-shown}
` + mocks + expect
}

// TestSagaTestReportsEachWrongExpectation: a wrong expectation exits 1 with one readable
// line per difference, naming the path, what the run did and what the case wanted.
func TestSagaTestReportsEachWrongExpectation(t *testing.T) {
	okMock := "    mocks:\n      forward: [{status: 201, body: {accepted: true, id: 7}}]\n"
	tests := []struct {
		name  string
		mocks string
		exp   string
		want  []string
	}{
		{"a wrong final status names both", okMock, "    expect: {status: failed}\n",
			[]string{`status: got "succeeded", want "failed"`}},
		{"a wrong number of tries names both", okMock, "    expect: {steps: {forward: {attempts: 3}}}\n",
			[]string{"steps.forward.attempts: got 1, want 3"}},
		{"a step that never ran reads not_reached", okMock, "    expect: {steps: {nope: {status: succeeded}}}\n",
			[]string{`steps.nope.status: got "not_reached", want "succeeded"`}},
		{"a wrong answer body names the key that differs", okMock, "    expect: {answer: {status: 200, body: {accepted: false}}}\n",
			[]string{"answer.status: got 201, want 200", "answer.body.accepted: got true, want false"}},
		{"an answer key the run did not give is missing", okMock, "    expect: {answer: {body: {reason: x}}}\n",
			[]string{`answer.body.reason: got nothing, want "x" (missing)`}},
		{"a wrong request header names the header", okMock, "    expect: {requests: {forward: [{method: PUT, headers: {X-Pushbackd-Partner: other}}]}}\n",
			[]string{`requests.forward[0].method: got "POST", want "PUT"`, `requests.forward[0].headers.X-Pushbackd-Partner: got "acme", want "other"`}},
		{"kv the run did not write is absent", okMock, "    expect: {kv: {k: 1}}\n",
			[]string{"kv.k: got nothing, want 1 (the key is absent)"}},
		{"an http step without a mock fails the case instead of reaching the network", "", "    expect: {status: succeeded}\n",
			[]string{"mocks: step forward sent POST https://downstream.example.com/in but the case has no mocks.forward"}},
		{"a mock under a misspelt step name is reported unused", okMock + "      froward: [{status: 200}]\n", "    expect: {status: succeeded}\n",
			[]string{"mocks.froward: got 0, want 1 (answers used"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "forward.yaml")
			mustWrite(t, file, forwardCase(tc.mocks, tc.exp))
			code, out, errOut := runCLI(t, "", "test", "-config", demoConfig, "-file", file)
			if code != 1 || !strings.Contains(out, "FAIL  forward: the case ("+file+":3:5)") || !strings.Contains(out, "0 passed, 1 failed") {
				t.Fatalf("exit %d, want 1 with a FAIL line\n%s%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "secret-value-never-shown") {
				t.Error("the output shows a secret")
			}
		})
	}
}

// TestSagaTestFileProblemsArePositioned: a test file that is wrong is refused with
// file:line:col, before anything runs.
func TestSagaTestFileProblemsArePositioned(t *testing.T) {
	many := "saga: forward\ncases:\n"
	for i := range 201 {
		many += fmt.Sprintf("  - {name: c%d, expect: {}}\n", i)
	}
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"an unknown key is refused where it is", forwardCase("", "    expect: {statsu: failed}\n"), `:7:14: unknown key "statsu"`},
		{"a body and a raw body together are refused", "cases:\n  - name: x\n    request: {body: {}, raw: text}\n    expect: {}\n", ":2:5: case \"x\": request has both body and raw"},
		{"an unknown step status is refused", "cases:\n  - name: x\n    expect: {steps: {a: {status: done}}}\n", `expect.steps.a.status "done"`},
		{"a case without expect is refused", "cases:\n  - name: x\n", "expect"},
		{"more cases than a file may hold are refused", many, "201 cases, more than the 200"},
		{"a mock with both error and timeout is refused", "cases:\n  - name: x\n    mocks: {a: [{error: e, timeout: true}]}\n    expect: {}\n", ":3:17: case \"x\": mocks.a: give error or timeout, not both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "forward.yaml")
			mustWrite(t, file, tc.src)
			code, out, errOut := runCLI(t, "", "test", "-config", demoConfig, "-file", file)
			if code != 1 || !strings.Contains(errOut, file+":") || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want 1 with %q\n%s%s", code, tc.want, out, errOut)
			}
		})
	}
}

// TestSagaTestRunsADraft: -saga tests a saga file that is not applied in place of the
// configured one of its name; a draft that does not compile is refused positioned.
func TestSagaTestRunsADraft(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../configs/sagas/forward.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "forward.yaml")
	mustWrite(t, edited, strings.Replace(string(src), "continue_on_error: true", "continue_on_error: false", 1))
	broken := filepath.Join(dir, "broken.yaml")
	mustWrite(t, broken, "name: forward\nsteps:\n  - name: a\n    set: {x: '${ 1 + }'}\n")

	t.Run("the shipped tests pass on the shipped saga", func(t *testing.T) {
		if code, out, errOut := runCLI(t, "", "test", "-config", demoConfig, "forward"); code != 0 {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("the same tests fail on a draft that stops passing a downstream 500 back", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "test", "-config", demoConfig, "-saga", edited)
		if code != 1 || !strings.Contains(out, "FAIL  forward: a downstream 500 is passed back") || !strings.Contains(out, `status: got "failed", want "succeeded"`) {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("a draft that does not compile is refused with its position", func(t *testing.T) {
		code, out, errOut := runCLI(t, "", "test", "-config", demoConfig, "-saga", broken)
		if code != 1 || !strings.Contains(errOut, broken+":4:") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
}

// TestReadmeSagaTestingExample: the README's "Testing sagas" example case is the shipped
// test file's, and its command prints what the README shows.
func TestReadmeSagaTestingExample(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(src), "\n### Testing sagas\n")
	if !ok {
		t.Fatal("README has no Testing sagas section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	block := func(lang string) string {
		_, rest, ok := strings.Cut(section, "```"+lang+"\n")
		if !ok {
			t.Fatalf("the section has no %s block", lang)
		}
		body, _, _ := strings.Cut(rest, "```\n")
		return body
	}
	shipped, err := os.ReadFile(filepath.Join(repoRoot, "configs/sagas/tests/forward.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	example := strings.TrimPrefix(block("yaml"), "cases:\n")
	if !strings.Contains(string(shipped), example) {
		t.Errorf("the README's example case is not in configs/sagas/tests/forward.yaml:\n%s", example)
	}
	cmd := strings.TrimSpace(block("sh"))
	args, ok := strings.CutPrefix(cmd, "go run ./cmd/pushbackd ")
	if !ok {
		t.Fatalf("the example command is %q", cmd)
	}
	t.Chdir(repoRoot)
	code, out, errOut := runCLI(t, "", strings.Fields(args)...)
	if code != 0 || out != block("text") {
		t.Errorf("%s: exit %d\n got:\n%s%s\nREADME shows:\n%s", cmd, code, out, errOut, block("text"))
	}
}

// TestPlanTakesADraftAndStepOutputs: `plan -saga` plans a saga file that is not applied,
// and a sample's outputs stand for what http and kv steps returned, so the steps after
// them are decided instead of unknown.
func TestPlanTakesADraftAndStepOutputs(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../../configs/sagas/encompass-milestone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	draft := filepath.Join(dir, "encompass-milestone.yaml")
	mustWrite(t, draft, strings.Replace(string(src), "body: {ignored: stale,", "body: {ignored: stale in the draft,", 1))
	event := `"partner": "acme", "endpoint": "encompass", "body": {"eventType": "milestone", "eventTime": "2026-05-01T00:00:00Z", "meta": {"resourceId": "L-1"}}`
	tests := []struct {
		name   string
		args   []string
		sample string
		want   []string
	}{
		{"without outputs a condition on a kv read is unknown", []string{"plan", "encompass-milestone"}, "{" + event + "}",
			[]string{`"ends": "unknown"`, `which plan does not run`}},
		{"an output for the kv read decides the condition", []string{"plan", "encompass-milestone"},
			"{" + event + `, "outputs": {"last_seen": "2026-06-01T00:00:00Z"}}`,
			[]string{`"ends": "respond at stale"`, `"ignored": "stale"`, `"reason": "output given"`}},
		{"a draft is planned in place of the configured saga", []string{"plan", "-saga", draft},
			"{" + event + `, "outputs": {"last_seen": "2026-06-01T00:00:00Z"}}`,
			[]string{`"ends": "respond at stale"`, `"ignored": "stale in the draft"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.sample, append(tc.args, "-config", demoConfig)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("plan lacks %s:\n%s", w, out)
				}
			}
		})
	}
}

// TestSagaTestSaysWhyATestFileIsMissing: a saga name that is not there, or a saga nobody
// wrote tests for, is told as such with the path looked at — not as open's bare error at a
// position ":0:0" that does not exist.
func TestSagaTestSaysWhyATestFileIsMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repoRoot, "configs"))); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, "sagas/forward.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "sagas/untested.yaml"), strings.Replace(string(src), "name: forward", "name: untested", 1))
	cfg := filepath.Join(dir, "pushbackd.yaml")
	missing := filepath.Join(dir, "nowhere.yaml")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"a saga that does not exist is named as such, with the sagas there are", []string{"nosuch"},
			[]string{`no saga "nosuch" in ` + filepath.Join(dir, "sagas"), "known: demo-echo", filepath.Join(dir, "sagas/tests/nosuch.yaml")}},
		{"a saga without a test file says so and where it looked", []string{"untested"},
			[]string{`saga "untested" has no test file: looked for ` + filepath.Join(dir, "sagas/tests/untested.yaml")}},
		{"a test file given that is not there says it cannot be read", []string{"-file", missing},
			[]string{"cannot read test file " + missing + ": no such file or directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", append([]string{"test", "-config", cfg}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(errOut, ":0:0:") {
				t.Errorf("stderr shows a position that does not exist:\n%s", errOut)
			}
		})
	}
}
