package app

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// TestASyncFailureTellsTheSenderOnlyTheStepAndAGenericReason: a sender of a sync endpoint
// learns which step failed and roughly why, never the downstream's address, port, answer
// or the dial error; the run record keeps all of it for the operator.
func TestASyncFailureTellsTheSenderOnlyTheStepAndAGenericReason(t *testing.T) {
	const leak = "db-7.internal.example refused login for svc_pushback"
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		http.Error(w, leak, http.StatusInternalServerError)
	}))
	defer down.Close()
	// A port nothing listens on: the dial is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// egress names loopback so the test keeps working where private addresses need it.
		"pushbackd.yaml": "limits: {sync_timeout: 5s, auth_failures: {per_client: 1000}}\negress: {allow: [127.0.0.1]}\ndata_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": `id: acme
settings: {down: "` + down.URL + `", refused: "` + refused + `"}
endpoints:
  - {name: five-hundred, saga: five_hundred, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: refused, saga: refused, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: slow, saga: slow, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
  - {name: refuses, saga: refuses, mode: sync, security: {method: bearer, tokens: [{value: t}]}}
`,
		"sagas/five_hundred.yaml": "name: five_hundred\nsteps:\n  - name: fetch_loan\n    http: {url: \"${ settings.down }/loans/${ body.id }\"}\n",
		"sagas/refused.yaml":      "name: refused\nsteps:\n  - name: notify_crm\n    http: {method: POST, url: \"${ settings.refused }/tasks\", json: {id: \"${ body.id }\"}}\n",
		"sagas/slow.yaml":         "name: slow\nsteps:\n  - name: fetch_loan\n    http: {url: \"${ settings.down }/slow\", timeout: 100ms}\n",
		"sagas/refuses.yaml":      "name: refuses\nsteps:\n  - name: check\n    fail: {message: \"loan ${ body.id } is not ours\"}\n",
	})
	a := runApp(t, dir, zaptest.NewLogger(t), false)
	c := newAdmin(t, a)

	downPort := down.URL[strings.LastIndex(down.URL, ":")+1:]
	refusedPort := refused[strings.LastIndex(refused, ":")+1:]
	cases := []struct {
		endpoint string
		message  string   // the whole message the sender gets
		hidden   []string // what the answer must not carry
		recorded []string // what the run record must carry
	}{
		{"five-hundred", "step fetch_loan failed: the downstream call failed",
			[]string{down.URL, "127.0.0.1", downPort, "db-7", "svc_pushback", "500", "/loans"},
			[]string{down.URL + "/loans/L-1", "unexpected status 500", leak}},
		{"refused", "step notify_crm failed: the downstream call failed",
			[]string{refused, "127.0.0.1", refusedPort, "refused", "dial", "connect"},
			[]string{refused + "/tasks", "connection refused"}},
		{"slow", "step fetch_loan failed: timed out",
			[]string{down.URL, "127.0.0.1", downPort, "/slow", "100ms"},
			[]string{down.URL + "/slow", "timed out after 100ms"}},
		{"refuses", "loan L-1 is not ours", nil, []string{"loan L-1 is not ours"}},
	}
	for _, tc := range cases {
		t.Run("the "+tc.endpoint+" saga answers 502 with "+tc.message, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/"+tc.endpoint, strings.NewReader(`{"id":"L-1"}`))
			req.Header.Set("Authorization", "Bearer t")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ans map[string]any
			if err := json.Unmarshal(raw, &ans); err != nil || resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("%d %s", resp.StatusCode, raw)
			}
			if ans["message"] != tc.message {
				t.Errorf("message %q, want %q", ans["message"], tc.message)
			}
			id, _ := ans["run_id"].(string)
			// Without the run id: a random UUID may hold a hidden string by chance ("db-7").
			said := strings.ReplaceAll(string(raw), id, "")
			for _, h := range tc.hidden {
				if strings.Contains(said, h) {
					t.Errorf("the answer %s carries %q", raw, h)
				}
			}
			var run string
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				// A sync run's outcome is written just after the answer.
				if _, run, _ = c.do("GET", "/admin/v1/runs/"+id, c.token, ""); strings.Contains(run, `"status":"failed"`) || time.Now().After(deadline) {
					break
				}
			}
			for _, r := range tc.recorded {
				if !strings.Contains(run, r) {
					t.Errorf("the run record lacks %q: %s", r, run)
				}
			}
		})
	}
}
