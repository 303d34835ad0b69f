package app

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// The kv limits in pushbackd.yaml reach the saga engine: over a limit, a kv step fails and
// the run's error names the setting.
func TestKVLimitsFromTheConfigBindKVSteps(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml": "limits: {kv_max_key_bytes: 64, kv_max_value_bytes: 1024, kv_max_entries_per_partner: 2, auth_failures: {per_client: 1000}}\n" +
			"data_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nendpoints:\n  - {name: remember, saga: remember, mode: sync, security: {method: bearer, tokens: [{value: t}]}}\n",
		"sagas/remember.yaml": "name: remember\nsteps:\n  - name: put\n    kv: {op: put, key: \"${ body.k }\", value: \"${ body.v }\"}\n" +
			"  - name: answer\n    respond: {status: 200, body: {stored: \"${ body.k }\"}}\n",
	})
	a := runApp(t, dir, zaptest.NewLogger(t), true)
	for _, tc := range []struct {
		name, key, value string
		want             string // in the run's error; "" = stored
	}{
		{"a first key is stored", "k1", "v", ""},
		{"a key longer than kv_max_key_bytes is refused", strings.Repeat("k", 65), "v", "over the limit of 64 (limits.kv_max_key_bytes)"},
		{"a value longer than kv_max_value_bytes is refused", "k2", strings.Repeat("v", 1024), "over the limit of 1024 (limits.kv_max_value_bytes)"},
		{"a second key is stored", "k2", "v", ""},
		{"a third key is past kv_max_entries_per_partner", "k3", "v", "already holds 2 entries, the limit set by limits.kv_max_entries_per_partner"},
		{"replacing a key of a partner at its cap works", "k1", "w", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, a, "remember", fmt.Sprintf(`{"k":%q,"v":%q}`, tc.key, tc.value))
			if tc.want == "" {
				if code != http.StatusOK || body["stored"] != tc.key {
					t.Fatalf("got %d %v", code, body)
				}
				return
			}
			id, _ := body["run_id"].(string)
			if code != http.StatusBadGateway || id == "" {
				t.Fatalf("got %d %v, want 502 with the run id", code, body)
			}
			// A sync run's outcome is filed just after its answer is sent.
			run, err := a.store.GetRun(context.Background(), id)
			for deadline := time.Now().Add(5 * time.Second); err == nil && !run.Status.Final() && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
				run, err = a.store.GetRun(context.Background(), id)
			}
			if err != nil {
				t.Fatal(err)
			}
			if run.Status != "failed" || !strings.Contains(run.Error, tc.want) {
				t.Fatalf("run %s %q, want failed with %q", run.Status, run.Error, tc.want)
			}
		})
	}
}
