package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The run record's answer is what the sender of a sync request got, a failed run's 502
// included: before, only a respond step's answer was recorded.
func TestASyncRunRecordsTheAnswerItSent(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	cases := []struct {
		name, endpoint string
		code           int
		message        string
	}{
		{"a failed sync run records its 502 and message", "fails", 502, "step call failed: the downstream call failed"},
		{"a saga's own answer is recorded as before", "answers", 201, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, sent := post(t, a, tc.endpoint, `{"loan":"L-1"}`)
			if code != tc.code {
				t.Fatalf("answered %d %v", code, sent)
			}
			runs := c.json("GET", "/admin/v1/runs?endpoint="+tc.endpoint+"&limit=1", "", 200)
			list, _ := runs["runs"].([]any)
			if len(list) != 1 {
				t.Fatalf("runs: %v", runs)
			}
			// The outcome is written as the answer goes out: wait for the record to end.
			var run map[string]any
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				run = c.json("GET", "/admin/v1/runs/"+list[0].(map[string]any)["id"].(string), "", 200)
				if run["status"] != "running" || time.Now().After(deadline) {
					break
				}
			}
			answer, _ := run["answer"].(map[string]any)
			if answer == nil {
				t.Fatalf("no answer recorded: %v", run)
			}
			if got := fmt.Sprint(answer["status"]); got != fmt.Sprint(tc.code) {
				t.Errorf("recorded status %s, sent %d", got, tc.code)
			}
			body, _ := answer["body"].(map[string]any)
			for k, v := range sent {
				if fmt.Sprint(body[k]) != fmt.Sprint(v) {
					t.Errorf("recorded body %v differs from the sent %v at %q", body, sent, k)
				}
			}
			if tc.message != "" && body["message"] != tc.message {
				t.Errorf("recorded message %v", body["message"])
			}
		})
	}
}

// A saga that debounces or serializes cannot serve a sync endpoint; the admin API's saga
// edit and a reload refuse it as validate does, and the running config stays.
func TestSyncEndpointsRefuseQueueingSagasOnEditAndReload(t *testing.T) {
	a := startApp(t, "5s")
	c := newAdmin(t, a)
	before := a.Current()
	t.Run("a saga edit adding debounce to a saga a sync endpoint uses is refused", func(t *testing.T) {
		edited := "name: answers\ndebounce: {key: \"${ body.loan }\", wait: 5s}\nsteps:\n  - {name: a, respond: {status: 200}}\n"
		code, raw, _ := c.do("PUT", "/admin/v1/sagas/answers", c.token, edited)
		if code != 422 || !strings.Contains(raw, `endpoint \"answers\": mode sync cannot use saga \"answers\", which debounces`) ||
			!strings.Contains(raw, "acme.yaml") {
			t.Fatalf("%d %s", code, raw)
		}
	})
	t.Run("a reload with a sync endpoint on a serializing saga is refused", func(t *testing.T) {
		dir := before.Dir
		writeFiles(t, dir, map[string]string{
			"sagas/queued.yaml":   "name: queued\nserialize_by: \"${ body.loan }\"\nsteps:\n  - {name: a, respond: {status: 200}}\n",
			"partners/other.yaml": "id: other\nendpoints: [{name: e, saga: queued, mode: sync, security: {method: bearer, tokens: [{value: o}]}}]\n",
		})
		t.Cleanup(func() { _ = os.Remove(filepath.Join(dir, "partners/other.yaml")) })
		out := c.json("POST", "/admin/v1/reload", "", 422)
		if msg := fmt.Sprint(out["errors"]); !strings.Contains(msg, "which has serialize_by") || !strings.Contains(msg, "queued.yaml:2:15") {
			t.Errorf("reload errors = %v", out)
		}
	})
	if a.Current() != before {
		t.Fatal("a refused change replaced the configuration")
	}
}
