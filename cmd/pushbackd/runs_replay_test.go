package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `runs replay` with filters asks with the dry-run count, starts a job on a real server and
// follows it to its end.
func TestRunsReplayByFilterConfirmsStartsAndFollowsTheJob(t *testing.T) {
	a, dataDir, cfgPath := startDemoWithData(t)
	admin := "http://" + a.AdminAddr()
	token := strings.TrimSpace(readFile(t, filepath.Join(dataDir, "admin.token")))
	count := func(query string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, admin+"/admin/v1/runs?limit=1000&"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page struct{ Runs []json.RawMessage }
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			t.Fatal(err)
		}
		return len(page.Runs)
	}
	for i := range 4 {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/loans", strings.NewReader(fmt.Sprintf(`{"eventId":"bulk-%d","eventType":"milestone"}`, i)))
		req.Header.Set("Authorization", "Bearer demo-bearer-token")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); count("endpoint=loans&status=succeeded") < 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the runs to replay never succeeded")
		}
	}
	common := []string{"-config", cfgPath, "-admin", admin, "-token-file", filepath.Join(dataDir, "admin.token")}
	replay := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, stdin, append(append([]string{"runs", "replay"}, args...), common...)...)
	}

	t.Run("declining the question replays nothing", func(t *testing.T) {
		code, out, errOut := replay("n\n", "-endpoint", "loans", "-status", "succeeded", "-since", "1h")
		if code != 1 || !strings.Contains(errOut, "replay 4 runs matching endpoint=loans status=succeeded since=") || !strings.Contains(errOut, "not confirmed") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if n := count("endpoint=loans"); n != 4 {
			t.Fatalf("%d runs after declining, want 4", n)
		}
	})
	t.Run("-yes starts the job and shows its progress to the end", func(t *testing.T) {
		code, out, errOut := replay("", "-endpoint", "loans", "-status", "succeeded", "-since", "1h", "-yes")
		if code != 0 || !strings.Contains(out, "replaying 4 runs") || !strings.Contains(out, "4/4 replayed, 0 failed") || !strings.Contains(out, " done: 4 replayed, 0 failed") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if n := count("endpoint=loans"); n != 8 {
			t.Fatalf("%d runs after the replay, want 8", n)
		}
	})
	t.Run("a filter that matches nothing says so and starts no job", func(t *testing.T) {
		code, out, errOut := replay("yes\n", "-endpoint", "loans", "-status", "failed", "-since", "1h")
		if code != 0 || !strings.Contains(out, "no runs match; nothing to replay") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no filter at all is a usage error", nil, "give a run id, or filters"},
		{"a paging flag is a usage error", []string{"-status", "failed", "-cursor", "abc"}, "-cursor does not apply to a bulk replay"},
		{"a malformed time is a usage error", []string{"-since", "yesterday"}, "-since:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := replay("", tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, want 2 saying %q\n%s%s", code, tc.want, out, errOut)
			}
		})
	}
	t.Run("a server refusal is reported with its reason", func(t *testing.T) {
		code, _, errOut := replay("", "-status", "nonsense", "-yes")
		if code != 1 || !strings.Contains(errOut, `unknown status "nonsense"`) || !strings.Contains(errOut, "HTTP 400") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
