package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	dataDir := t.TempDir()
	cfgPath := filepath.Join(repoRoot, "configs/pushbackd.yaml")
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
	return a, dataDir, cfgPath
}

type readmeExample struct {
	line   int
	script string
	want   string
}

var fence = regexp.MustCompile("(?ms)^```(sh|json)\n(.*?)^```\n")

// readmeExamples finds every ```sh block that talks to the demo server and the ```json
// block right after it, which is the answer the README promises.
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
		if lang != "sh" || !strings.Contains(body, "127.0.0.1:8080") && !strings.Contains(body, "pushbackd curl") {
			continue
		}
		if i+1 >= len(blocks) || string(src[blocks[i+1][2]:blocks[i+1][3]]) != "json" {
			t.Fatalf("README line %d: a curl example without a ```json answer after it", bytes.Count(src[:b[0]], []byte("\n"))+1)
		}
		next := blocks[i+1]
		out = append(out, readmeExample{line: bytes.Count(src[:b[0]], []byte("\n")) + 1, script: body, want: string(src[next[4]:next[5]])})
	}
	return out
}

func TestReadmeExamples(t *testing.T) {
	requireTools(t, "bash", "curl", "openssl", "base64", "sed")
	bin := buildBinary(t)
	a := startDemo(t)
	examples := readmeExamples(t)
	if len(examples) < 9 {
		t.Fatalf("found %d README examples; the README shows one per security method and failures", len(examples))
	}
	for _, ex := range examples {
		t.Run("README line "+strings.TrimSpace(strings.SplitN(ex.script, "\n", 2)[0]), func(t *testing.T) {
			// The README talks to the default port; this server has a free one.
			script := strings.ReplaceAll(ex.script, "127.0.0.1:8080", a.Addr())
			script = strings.ReplaceAll(script, "go run ./cmd/pushbackd curl", bin+" curl -url http://"+a.Addr())
			script = strings.ReplaceAll(script, "go run ./cmd/pushbackd sign", bin+" sign")
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
			cmd.Dir = repoRoot
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("README line %d failed: %v\n%s", ex.line, err, stderr.String())
			}
			// One JSON answer per line; an example may send several requests.
			gotLines := strings.Split(strings.TrimSpace(string(out)), "\n")
			wantLines := strings.Split(strings.TrimSpace(ex.want), "\n")
			if len(gotLines) != len(wantLines) {
				t.Fatalf("README line %d: %d answers, the README shows %d:\n%s", ex.line, len(gotLines), len(wantLines), out)
			}
			runIDs := map[string]string{} // README id -> real id: the same README id must be the same run
			for i := range wantLines {
				var got, want map[string]any
				if err := json.Unmarshal([]byte(gotLines[i]), &got); err != nil {
					t.Fatalf("README line %d: answer is not JSON: %q", ex.line, gotLines[i])
				}
				if err := json.Unmarshal([]byte(wantLines[i]), &want); err != nil {
					t.Fatalf("README line %d: the README's answer is not JSON: %v", ex.line, err)
				}
				// Run ids differ on every run: the README's only show that there is one, and
				// which answers name the same run.
				if w, ok := want["run_id"].(string); ok {
					g, _ := got["run_id"].(string)
					if len(g) != 36 {
						t.Errorf("README line %d: run_id = %v", ex.line, got["run_id"])
					}
					if prev, seen := runIDs[w]; seen && prev != g {
						t.Errorf("README line %d: answer %d names run %s, want the same run as before (%s)", ex.line, i+1, g, prev)
					}
					runIDs[w] = g
					got["run_id"], want["run_id"] = "", ""
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("README line %d:\n got %s\nwant %s", ex.line, gotLines[i], wantLines[i])
				}
			}
		})
	}
}
