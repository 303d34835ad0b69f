package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/app"
)

// repoRoot is where the README's commands run from.
const repoRoot = "../.."

// requireTools skips when a tool the README uses is missing, unless
// PUSHBACKD_REQUIRE_TOOLS is set (CI sets it, so there a missing tool fails).
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("PUSHBACKD_REQUIRE_TOOLS") != "" {
				t.Fatalf("%s is not installed", tool)
			}
			t.Skipf("%s is not installed (set PUSHBACKD_REQUIRE_TOOLS=1 to make this a failure)", tool)
		}
	}
}

// buildBinary compiles pushbackd once per test that needs the real executable.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pushbackd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startDemo runs the shipped demo config on free ports.
func startDemo(t *testing.T) *app.App {
	t.Helper()
	a, _, _ := startDemoWithData(t)
	return a
}

// startDemoWithData is startDemo that also says where its data and config are.
func startDemoWithData(t *testing.T) (*app.App, string, string) {
	t.Helper()
	cfgPath := filepath.Join(repoRoot, "configs/pushbackd.yaml")
	a, dataDir := startConfig(t, cfgPath)
	return a, dataDir, cfgPath
}

// startConfig starts an app on the config at cfgPath with a fresh data directory.
func startConfig(t *testing.T, cfgPath string) (*app.App, string) {
	t.Helper()
	dataDir := t.TempDir()
	a, err := app.New(app.Options{ConfigPath: cfgPath, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		DataDir: dataDir, Logger: zaptest.NewLogger(t)})
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
	return a, dataDir
}

type readmeExample struct {
	line   int
	script string
	lang   string // the answer's: json (JSON values, compared as values) or text (compared line by line)
	want   string
}

var fence = regexp.MustCompile("(?ms)^```(sh|json|text)\n(.*?)^```\n")

// readmeExamples finds every ```sh block that talks to the demo server, and every other
// ```sh block with its answer right after it (a ```json or ```text block): the answer is
// what the README promises the commands print.
func readmeExamples(t *testing.T) []readmeExample {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := fence.FindAllSubmatchIndex(src, -1)
	var out []readmeExample
	for i, b := range blocks {
		lang, body := string(src[b[2]:b[3]]), string(src[b[4]:b[5]])
		if lang != "sh" {
			continue
		}
		line := bytes.Count(src[:b[0]], []byte("\n")) + 1
		next := ""
		// The answer must follow the commands at once: only blank lines may sit between.
		if i+1 < len(blocks) && len(bytes.TrimSpace(src[b[1]:blocks[i+1][0]])) == 0 {
			next = string(src[blocks[i+1][2]:blocks[i+1][3]])
		}
		talks := strings.Contains(body, "127.0.0.1:8080") || strings.Contains(body, "pushbackd curl")
		if talks && next != "json" {
			t.Fatalf("README line %d: a curl example without a ```json answer after it", line)
		}
		if next != "json" && next != "text" {
			continue
		}
		out = append(out, readmeExample{line: line, script: body, lang: next, want: string(src[blocks[i+1][4]:blocks[i+1][5]])})
	}
	return out
}

// placeholder is how a README answer shows a value that differs on every run (an id, a
// time, a count that depends on the examples before): <name>. It matches any non-empty
// string or any number, and the same name must be the same value
// everywhere in one example's answers.
var placeholder = regexp.MustCompile(`^<[^<>]+>$`)

// answerMatcher compares one example's answers with the README's, remembering what each
// placeholder and each README run id stood for.
type answerMatcher struct {
	t      *testing.T
	line   int
	values map[string]string // placeholder or README run id -> the real value
}

func (m *answerMatcher) bind(name, got string) {
	if prev, seen := m.values[name]; seen && prev != got {
		m.t.Errorf("README line %d: %s is %q here and %q before: the README shows the same value", m.line, name, got, prev)
	}
	m.values[name] = got
}

// blank replaces, in got, every value the README shows as a placeholder with the
// placeholder, after checking it, so what is left compares exactly.
func (m *answerMatcher) blank(got, want any) any {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		if placeholder.MatchString(w) && (ok && g != "" || got != nil && !ok) {
			// A number too: "<n>" twice says two counts are equal, whatever they are.
			m.bind(w, fmt.Sprint(got))
			return w
		}
		// A README run id shown again (as retry_of, say) must name the same run.
		if real, seen := m.values[w]; seen && ok && g == real {
			return w
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return got
		}
		// Run ids differ on every run: the README's only show that there is one, and
		// which answers name the same run.
		if wid, ok := w["run_id"].(string); ok && !placeholder.MatchString(wid) {
			gid, _ := g["run_id"].(string)
			if len(gid) != 36 {
				m.t.Errorf("README line %d: run_id = %v", m.line, g["run_id"])
			}
			m.bind(wid, gid)
			g["run_id"] = wid
		}
		for k, wv := range w {
			if gv, ok := g[k]; ok {
				g[k] = m.blank(gv, wv)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return got
		}
		for i := range min(len(g), len(w)) {
			g[i] = m.blank(g[i], w[i])
		}
	}
	return got
}

// decodeAll reads a stream of JSON values: one a line, or indented over several.
func decodeAll(s string) ([]any, error) {
	var out []any
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, err
		}
		out = append(out, v)
	}
}

func (m *answerMatcher) json(out, want string) {
	got, err := decodeAll(out)
	if err != nil {
		m.t.Fatalf("README line %d: answer is not JSON: %v\n%s", m.line, err, out)
	}
	wants, err := decodeAll(want)
	if err != nil {
		m.t.Fatalf("README line %d: the README's answer is not JSON: %v", m.line, err)
	}
	if len(got) != len(wants) {
		m.t.Fatalf("README line %d: %d answers, the README shows %d:\n%s", m.line, len(got), len(wants), out)
	}
	for i := range wants {
		if g := m.blank(got[i], wants[i]); !reflect.DeepEqual(g, wants[i]) {
			gb, _ := json.Marshal(g)
			wb, _ := json.Marshal(wants[i])
			m.t.Errorf("README line %d, answer %d:\n got %s\nwant %s", m.line, i+1, gb, wb)
		}
	}
}

var textPlaceholder = regexp.MustCompile(`<[^<>\s][^<>]*>`)

// text compares printed lines; a <name> in the README's stands for one word.
func (m *answerMatcher) text(out, want string) {
	gotLines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	wantLines := strings.Split(strings.TrimRight(want, "\n"), "\n")
	if len(gotLines) != len(wantLines) {
		m.t.Fatalf("README line %d: %d lines, the README shows %d:\n%s", m.line, len(gotLines), len(wantLines), out)
	}
	for i, w := range wantLines {
		names := textPlaceholder.FindAllString(w, -1)
		pattern := "^" + textPlaceholder.ReplaceAllStringFunc(regexp.QuoteMeta(w), func(string) string { return `(\S+)` }) + "$"
		// QuoteMeta leaves < and > alone, so the placeholders are still there to replace.
		sm := regexp.MustCompile(pattern).FindStringSubmatch(gotLines[i])
		if sm == nil {
			m.t.Errorf("README line %d, output line %d:\n got %s\nwant %s", m.line, i+1, gotLines[i], w)
			continue
		}
		for j, name := range names {
			m.bind(name, sm[j+1])
		}
	}
}

func TestReadmeExamples(t *testing.T) {
	requireTools(t, "bash", "curl", "openssl", "base64", "sed", "grep")
	bin := buildBinary(t)
	a, dataDir, _ := startDemoWithData(t)
	examples := readmeExamples(t)
	if len(examples) < 9 {
		t.Fatalf("found %d README examples; the README shows one per security method and failures", len(examples))
	}
	admin := "-admin http://" + a.AdminAddr() + " -token-file " + filepath.Join(dataDir, "admin.token")
	for _, ex := range examples {
		t.Run("README line "+strings.TrimSpace(strings.SplitN(ex.script, "\n", 2)[0]), func(t *testing.T) {
			// The README talks to the default ports and data directory; this server has
			// free ports and a directory of its own.
			script := strings.ReplaceAll(ex.script, "127.0.0.1:8080", a.Addr())
			script = strings.ReplaceAll(script, "127.0.0.1:8081", a.AdminAddr())
			script = strings.ReplaceAll(script, "$(cat data/admin.token)", "$(cat "+filepath.Join(dataDir, "admin.token")+")")
			script = strings.ReplaceAll(script, "go run ./cmd/pushbackd curl", bin+" curl -url http://"+a.Addr())
			script = strings.ReplaceAll(script, "go run ./cmd/pushbackd runs", bin+" runs "+admin)
			script = strings.ReplaceAll(script, "go run ./cmd/pushbackd ", bin+" ")
			// An example that waits for a run (until ...; do sleep; done) must not wait
			// forever when the run never gets there.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
			cmd.WaitDelay = time.Second // the script's children may hold its output open
			cmd.Dir = repoRoot
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if ctx.Err() != nil {
				err = fmt.Errorf("still running after a minute: %w", err)
			}
			if err != nil {
				t.Fatalf("README line %d failed: %v\n%s%s", ex.line, err, out, stderr.String())
			}
			m := &answerMatcher{t: t, line: ex.line, values: map[string]string{}}
			if ex.lang == "text" {
				m.text(string(out), ex.want)
				return
			}
			m.json(string(out), ex.want)
		})
	}
}
