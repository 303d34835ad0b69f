package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runBinary runs the built pushbackd in dir with env added, returning its exit code and output.
func runBinary(t *testing.T, bin, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// A positional argument is used as documented or refused with exit 2 and a hint: once,
// `validate FILE` validated the default config and `sign -secret-env K body.json` signed an
// empty standard input, both exiting 0.
func TestStrayArgumentsAreUsedOrRefused(t *testing.T) {
	bin := buildBinary(t)
	// The commands run where there is no configs/pushbackd.yaml, so using the default
	// instead of the named file cannot pass by accident.
	dir := t.TempDir()
	good := filepath.Join(dir, "good", "pushbackd.yaml")
	mustWrite(t, good, "listen: 127.0.0.1:0\nadmin: {listen: 127.0.0.1:0}\n")
	mustWrite(t, filepath.Join(dir, "good/sagas/echo.yaml"), "name: echo\nsteps:\n  - {name: a, respond: {status: 200}}\n")
	mustWrite(t, filepath.Join(dir, "good/partners/a.yaml"), "id: a\nendpoints: [{name: e, saga: echo, security: {method: bearer, tokens: [{value: t}]}}]\n")
	bad := filepath.Join(dir, "bad", "pushbackd.yaml")
	mustWrite(t, bad, "listen: nowhere\n")
	mustWrite(t, filepath.Join(dir, "body.json"), `{"loan":"L-1"}`)
	env := []string{"K=s3cret"}

	_, fromFlag, _ := runBinary(t, bin, dir, env, "sign", "-secret-env", "K", "-file", "body.json")
	_, emptyBody, _ := runBinary(t, bin, dir, env, "sign", "-secret-env", "K")
	if fromFlag == emptyBody {
		t.Fatalf("the body's signature equals the empty body's: %q", fromFlag)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // a substring; "=" prefix: the whole of it
		stderr string
	}{
		{"validate FILE validates that file", []string{"validate", good}, 0, good + ": valid (1 partners", ""},
		{"validate FILE reports that file's errors", []string{"validate", bad}, 1, "", bad + ":1:9: listen"},
		{"validate with flags after the file still validates the file", []string{"validate", good, "-config", good}, 0, good + ": valid", ""},
		{"validate with two different config files is refused", []string{"validate", "-config", good, bad}, 2, "", "two config files"},
		{"validate with two files is refused", []string{"validate", good, bad}, 2, "", "too many arguments"},
		{"serve FILE reads that file", []string{"serve", bad}, 1, "", bad + ":1:9: listen"},
		{"serve with two files is refused", []string{"serve", good, bad}, 2, "", "give one config file"},
		{"sign signs the file given as its argument", []string{"sign", "-secret-env", "K", "body.json"}, 0, "=" + fromFlag, ""},
		{"sign takes flags after the file", []string{"sign", "body.json", "-secret-env", "K"}, 0, "=" + fromFlag, ""},
		{"sign refuses a second body", []string{"sign", "-secret-env", "K", "-file", "body.json", "other.json"}, 2, "", "give it as -file FILE or as the argument"},
		{"curl refuses a stray argument", []string{"curl", "a/e", "body.json", "-config", good}, 2, "", "usage: pushbackd curl"},
		{"plan refuses a stray argument", []string{"plan", "echo", "body.json", "-config", good}, 2, "", "usage: pushbackd plan"},
		{"runs list refuses a stray argument", []string{"runs", "list", "failed", "-config", good}, 2, "", "usage: pushbackd runs list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runBinary(t, bin, dir, env, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			if want, ok := strings.CutPrefix(c.stdout, "="); ok && out != want {
				t.Errorf("stdout %q, want %q", out, want)
			} else if !ok && !strings.Contains(out, c.stdout) {
				t.Errorf("stdout lacks %q:\n%s", c.stdout, out)
			}
			if !strings.Contains(errOut, c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, errOut)
			}
		})
	}
}
