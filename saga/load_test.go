package saga

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badSagas lists every fixture in testdata/bad with the one error it must produce: the
// message part, and the line and column of the YAML value it is about.
var badSagas = []struct {
	file   string
	msg    string
	line   int
	column int
}{
	{"unknown-key.yaml", `unknown key "retries" in a step`, 5, 5},
	{"unknown-saga-key.yaml", `unknown key "descripton" (known keys: name, description`, 2, 1},
	{"two-actions.yaml", "a step has exactly one action, this one has set and respond", 5, 5},
	{"no-action.yaml", `step "nothing" has no action: add one of http, set, kv, respond, fail, log`, 3, 5},
	{"duplicate-step.yaml", `duplicate step name "answer" (first used on line 3)`, 5, 11},
	{"bad-step-name.yaml", `bad step name "Fetch-Loan"`, 3, 11},
	{"when-not-bool.yaml", `step "answer": when: must be true or false: expected bool, but got int (expression column 1)`, 4, 11},
	{"expr-syntax.yaml", `step "answer": when: unexpected token EOF (expression column 32)`, 4, 11},
	{"unknown-name.yaml", `step "call": http.url: unknown name setings (template column 4)`, 5, 12},
	{"step-not-earlier.yaml", `when: steps.fetch: step "fetch" does not run before this point: an expression can read only earlier steps (expression column 7)`, 4, 11},
	{"step-unknown.yaml", `respond.body.id: steps.fetch_loan: there is no step "fetch_loan" (steps before this point: fetch) (template column 10)`, 7, 18},
	{"bad-duration.yaml", `invalid duration "5 seconds"`, 5, 14},
	{"bad-debounce-scope.yaml", `debounce.scope must be endpoint (the default), site or partner, not "global"`, 2, 53},
	{"negative-attempts.yaml", `step "fetch": retry.attempts must be at least 1`, 5, 23},
	{"name-mismatch.yaml", `name "something-else" does not match the file name "name-mismatch.yaml"`, 1, 7},
	{"unterminated-template.yaml", `http.url: template: ${ without a closing } (template column 26)`, 5, 12},
	{"two-bodies.yaml", "json and form both set: a request has one body", 7, 13},
	{"error-outside-cleanup.yaml", "error is only set in compensate and on_failure (template column 4)", 5, 19},
	{"bad-status.yaml", "status: 999 is not an HTTP status (100-599)", 4, 23},
	{"bad-kv-op.yaml", `kv: unknown op "upsert": use get, put or delete`, 4, 14},
	{"ctx-reserved.yaml", "when: unknown name ctx (expression column 1)", 4, 11},
	{"when-template.yaml", "when is a bare expression: write it without ${ }", 4, 11},
	{"url-from-body.yaml", `step "forward": http.url: the scheme and host come from ${ body.url }, which reads body: sender data may not choose where pushbackd connects; put the base URL in settings`, 5, 12},
}

func TestBadSagaFilesReportTheProblemWithItsPosition(t *testing.T) {
	covered := map[string]bool{"many-errors.yaml": true}
	for _, tc := range badSagas {
		covered[tc.file] = true
		t.Run(strings.TrimSuffix(tc.file, ".yaml")+" is refused", func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata/bad", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s, errs := Parse("sagas/"+tc.file, src)
			if s != nil {
				t.Error("Parse returned a saga for a bad file")
			}
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.File != "sagas/"+tc.file || e.Line != tc.line || e.Column != tc.column || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("got  %v\nwant sagas/%s:%d:%d: ...%s...", e, tc.file, tc.line, tc.column, tc.msg)
			}
		})
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, f := range files {
		if !covered[filepath.Base(f)] {
			t.Errorf("fixture %s has no expectation in badSagas", f)
		}
	}
}

func TestAFileWithSeveralProblemsReportsEveryOneInLineOrder(t *testing.T) {
	src, err := os.ReadFile("testdata/bad/many-errors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, errs := Parse("sagas/many-errors.yaml", src)
	want := []struct {
		line, column int
		msg          string
	}{
		{2, 10, `invalid duration "forever"`},
		{4, 11, `bad step name "First"`},
		{7, 11, "unknown name nope"},
		{9, 5, "this one has set and log"},
		{12, 12, `steps.fourth: there is no step "fourth"`},
		{13, 23, "retry.attempts must be at least 1"},
		{14, 11, `duplicate step name "second"`},
		{15, 26, `unknown key "extra"`},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		e := errs[i]
		if e.Line != w.line || e.Column != w.column || !strings.Contains(e.Message, w.msg) {
			t.Errorf("error %d: got %v, want %d:%d ...%s...", i, e, w.line, w.column, w.msg)
		}
	}
}

func TestParse(t *testing.T) {
	t.Run("the version is the start of the file's sha256 and changes with the file", func(t *testing.T) {
		src := "name: v\nsteps: [{name: a, respond: {}}]\n"
		a := mustParse(t, "v", src)
		b := mustParse(t, "v", "name: v\nsteps: [{name: a, respond: {status: 201}}]\n")
		sum := sha256.Sum256([]byte(src))
		if want := hex.EncodeToString(sum[:])[:12]; a.Version != want {
			t.Errorf("Version = %q, want %q", a.Version, want)
		}
		if a.Version == b.Version {
			t.Error("two different files share a version")
		}
	})

	t.Run("retry defaults to one attempt and fills in backoff", func(t *testing.T) {
		s := mustParse(t, "r", `
name: r
steps:
  - name: once
    http: {url: "http://x.example"}
  - name: thrice
    http: {url: "http://x.example"}
    retry: {attempts: 3}
`)
		if got := s.Steps[0].Retry; got.Attempts != 1 {
			t.Errorf("default retry = %+v, want 1 attempt", got)
		}
		if got := s.Steps[1].Retry; got.Attempts != 3 || got.Backoff <= 0 || got.MaxBackoff < got.Backoff {
			t.Errorf("retry = %+v, want 3 attempts with a backoff", got)
		}
	})

	t.Run("a compensation may read its own step and the error", func(t *testing.T) {
		mustParse(t, "c", `
name: c
steps:
  - name: task
    http: {method: POST, url: "http://crm.example/tasks"}
    compensate:
      http: {method: DELETE, url: "http://crm.example/tasks/${ steps.task.output.body.id }?why=${ error.message }"}
on_failure:
  log: {message: "failed at ${ error.step }: ${ steps.task.status }"}
`)
	})

	t.Run("debounce and serialize_by compile and render", func(t *testing.T) {
		s := mustParse(t, "d", `
name: d
debounce: {key: "${ body.meta.resourceId }", wait: 10s}
serialize_by: loan-${ body.meta.resourceId }
steps: [{name: a, respond: {}}]
`)
		inv := invocation(s, map[string]any{"meta": map[string]any{"resourceId": "L1"}})
		if k, err := s.Debounce.Key.Render(inv); err != nil || k != "L1" || s.Debounce.Wait.Seconds() != 10 {
			t.Errorf("debounce key = %q, %v; wait %v", k, err, s.Debounce.Wait)
		}
		if k, err := s.SerializeBy.Render(inv); err != nil || k != "loan-L1" {
			t.Errorf("serialize_by = %q, %v", k, err)
		}
		if s.Debounce.Scope != ScopeEndpoint {
			t.Errorf("debounce scope %q, want endpoint by default", s.Debounce.Scope)
		}
	})

	t.Run("debounce may widen its scope to the site or the partner", func(t *testing.T) {
		for _, sc := range []Scope{ScopeEndpoint, ScopeSite, ScopePartner} {
			s := mustParse(t, "d", "name: d\ndebounce: {key: k, wait: 1s, scope: "+string(sc)+"}\nsteps: [{name: a, respond: {}}]\n")
			if s.Debounce.Scope != sc {
				t.Errorf("scope %q parsed as %q", sc, s.Debounce.Scope)
			}
		}
	})

	t.Run("an empty file and an empty steps list are refused", func(t *testing.T) {
		for _, src := range []string{"", "name: e\nsteps: []\n"} {
			if _, errs := Parse("sagas/e.yaml", []byte(src)); len(errs) == 0 {
				t.Errorf("%q parsed", src)
			}
		}
	})

	t.Run("a YAML syntax error is positioned", func(t *testing.T) {
		_, errs := Parse("sagas/y.yaml", []byte("name: y\nsteps:\n  - name: [a\n"))
		if len(errs) != 1 || errs[0].Line == 0 {
			t.Fatalf("errs = %v", errs)
		}
	})

	t.Run("fail accepts a bare message", func(t *testing.T) {
		mustParse(t, "f", "name: f\nsteps: [{name: no, fail: \"unsupported event ${ body.type }\"}]\n")
	})
}

func TestExpressionsCannotReachOutside(t *testing.T) {
	for _, expr := range []string{`env("HOME")`, `getenv("HOME")`, `readFile("/etc/passwd")`, `exec("id")`, `$env.ctx`, `$env["settings"]`, `ctx`} {
		t.Run(expr+" does not compile", func(t *testing.T) {
			src := "name: x\nsteps:\n  - name: a\n    set: {v: '${ " + expr + " }'}\n"
			if _, errs := Parse("sagas/x.yaml", []byte(src)); len(errs) == 0 {
				t.Errorf("%s compiled", expr)
			}
		})
	}
	t.Run("a compensation cannot respond", func(t *testing.T) {
		src := "name: x\nsteps:\n  - name: a\n    set: {v: 1}\n    compensate: {respond: {status: 500}}\n"
		if _, errs := Parse("sagas/x.yaml", []byte(src)); len(errs) != 1 || !strings.Contains(errs[0].Message, "compensate cannot respond") {
			t.Errorf("errs %v", errs)
		}
	})
}

func TestCompileKeyForEndpointTemplates(t *testing.T) {
	tmpl, errs := CompileKey("${ body.eventId }-${ partner.id }", "idempotency_key")
	if errs != nil {
		t.Fatal(errs)
	}
	inv := invocation(&Saga{Name: "x"}, map[string]any{"eventId": "e-1"})
	if got, err := tmpl.Render(inv); err != nil || got != "e-1-acme" {
		t.Errorf("rendered %q, %v", got, err)
	}
	for _, bad := range []string{"${ body.eventId", "${ steps.x.output }", "${ nosuch }"} {
		if _, errs := CompileKey(bad, "idempotency_key"); len(errs) == 0 || !strings.Contains(errs[0].Message, "idempotency_key") {
			t.Errorf("%q compiled or its error lacks the label: %v", bad, errs)
		}
	}
}
