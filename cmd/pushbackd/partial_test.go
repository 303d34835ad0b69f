package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/app"
)

// runs, curl and plan work while an unrelated partner or saga file is broken — exactly when
// an operator needs them. runs reads only the server section; curl and plan need only the
// partner or saga they name and print the other files' problems as warnings.
func TestOperatorCommandsWorkBesideABrokenFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repoRoot, "configs"))); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pushbackd.yaml")
	adminAddr := freeAddr(t)
	mustWrite(t, cfgPath, "listen: "+freeAddr(t)+"\nadmin: {listen: "+adminAddr+"}\ndata_dir: "+filepath.Join(dir, "data")+
		"\negress: {allow: [\"*\", 127.0.0.1]}\n")
	a, err := app.New(app.Options{ConfigPath: cfgPath, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	// The running server keeps the config it loaded; an edit breaks one file on disk.
	brokenPartner := filepath.Join(dir, "partners/zeta.yaml")
	mustWrite(t, brokenPartner, "id: zeta\nendpoints: [{name: e, saga: gone, security: {method: bearer, tokens: [{value: t}]}}]\n")
	brokenSaga := filepath.Join(dir, "sagas/broken.yaml")
	mustWrite(t, brokenSaga, "name: broken\nsteps: 7\n")
	mustWrite(t, filepath.Join(dir, "body.json"), `{"loan":"L-1"}`)
	mustWrite(t, filepath.Join(dir, "sample.json"), `{"partner":"acme","endpoint":"github","body":{"loan":"L-1"}}`)

	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		warnings []string // stderr must hold each
	}{
		{"runs list reads only the server section", []string{"runs", "list", "-config", cfgPath}, 0, "RUN", nil},
		{"curl for a valid partner works and warns of the broken files", []string{"curl", "acme/github", "-file", filepath.Join(dir, "body.json"), "-config", cfgPath},
			0, "curl -sS -X POST", []string{brokenPartner + ":2:13: warning: ", brokenSaga + ":2:8: warning: "}},
		{"plan for a valid saga works and warns of the broken files", []string{"plan", "demo-echo", "-file", filepath.Join(dir, "sample.json"), "-config", cfgPath},
			0, `"steps"`, []string{brokenPartner + ":2:13: warning: "}},
		{"curl for the broken partner fails with its errors", []string{"curl", "zeta/e", "-file", filepath.Join(dir, "body.json"), "-config", cfgPath},
			1, "", []string{brokenPartner + ":2:13: "}},
		{"plan for the broken saga fails with its errors", []string{"plan", "broken", "-config", cfgPath}, 1, "", []string{brokenSaga + ":2:8: "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", c.args...)
			if code != c.code || !strings.Contains(out, c.stdout) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			for _, w := range c.warnings {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if c.code != 0 && strings.Contains(errOut, "warning") {
				t.Errorf("a failure's errors are printed as warnings:\n%s", errOut)
			}
		})
	}
	t.Run("runs still needs a valid server section", func(t *testing.T) {
		mustWrite(t, cfgPath, "listen: nowhere\n")
		code, _, errOut := runCLI(t, "", "runs", "list", "-config", cfgPath)
		if code != 1 || !strings.Contains(errOut, `listen: "nowhere" is not host:port`) {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
}

// The same with the real executable, and a broken saga that the named partner uses: curl
// never runs the saga, so it prints the command and reports the saga's problems (in the saga
// file, and the "not found" they cause in the partner file) as warnings; plan and validate,
// which do need sagas, still fail on them.
func TestBinaryCurlAndPlanNeedOnlyWhatTheyName(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repoRoot, "configs"))); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pushbackd.yaml")
	partnerFile := filepath.Join(dir, "partners/acme.yaml")
	brokenSaga := filepath.Join(dir, "sagas/demo-echo.yaml")
	mustWrite(t, brokenSaga, "name: demo-echo\nsteps: 7\n")
	brokenPartner := filepath.Join(dir, "partners/zeta.yaml")
	mustWrite(t, brokenPartner, "id: zeta\nendpoints: [{name: e, saga: forward, security: {method: nope}}]\n")
	body := filepath.Join(dir, "body.json")
	mustWrite(t, body, `{"loan":"L-1"}`)
	sample := filepath.Join(dir, "sample.json")
	mustWrite(t, sample, `{"partner":"acme","endpoint":"github","body":{"loan":"L-1"}}`)

	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   []string // stderr must hold each
		warnings bool     // whether stderr's lines are warnings
	}{
		{"curl for a partner whose saga is broken prints the command and warns of the saga",
			[]string{"curl", "acme/encompass", "-file", body, "-config", cfgPath}, 0, "curl -sS -X POST",
			[]string{brokenSaga + ":2:8: warning: ", partnerFile + ":", `saga "demo-echo" did not load`, brokenPartner + ":2:"}, true},
		{"curl for a site-less endpoint of the same partner works too",
			[]string{"curl", "acme/github", "-file", body, "-config", cfgPath}, 0, "curl -sS -X POST", []string{"warning: "}, true},
		{"curl for the broken partner still fails with its errors",
			[]string{"curl", "zeta/e", "-file", body, "-config", cfgPath}, 1, "", []string{brokenPartner + ":2:"}, false},
		{"plan for a saga beside a broken unrelated partner works and warns",
			[]string{"plan", "forward", "-file", sample, "-config", cfgPath}, 0, `"steps"`, []string{brokenPartner + ":2:", "warning: "}, true},
		{"plan for the broken saga fails with its errors",
			[]string{"plan", "demo-echo", "-file", sample, "-config", cfgPath}, 1, "", []string{brokenSaga + ":2:8: "}, false},
		{"validate still fails on the broken saga and what it breaks",
			[]string{"validate", "-config", cfgPath}, 1, "", []string{brokenSaga + ":2:8: ", `saga "demo-echo" did not load`}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			var out, errOut strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || !strings.Contains(out.String(), c.stdout) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out.String(), errOut.String())
			}
			for _, w := range c.stderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
			if got := strings.Contains(errOut.String(), "warning"); got != c.warnings {
				t.Errorf("stderr has warnings: %v, want %v:\n%s", got, c.warnings, errOut.String())
			}
		})
	}
}
