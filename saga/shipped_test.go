package saga

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

func shipped(t *testing.T, name string) *Saga {
	t.Helper()
	src, err := os.ReadFile("../configs/sagas/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, name, string(src))
}

// fakeCRM records what the shipped sagas send and answers like a LOS and a CRM would.
type fakeCRM struct {
	mu       sync.Mutex
	requests []string
	failPost bool
}

func (f *fakeCRM) handler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(b))
	fail := f.failPost
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/encompass/v3/loans/"):
		_, _ = io.WriteString(w, `{"loanNumber": "1001", "milestone": "Processing"}`)
	case r.Method == http.MethodPost && fail:
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error": "bad task"}`)
	case r.Method == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id": "T-9"}`)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeCRM) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func TestShippedEncompassMilestone(t *testing.T) {
	s := shipped(t, "encompass-milestone")
	crm := &fakeCRM{}
	srv := httptest.NewServer(http.HandlerFunc(crm.handler))
	defer srv.Close()
	e, _, _ := testEngine(t)
	inv := func(name string) *Invocation {
		inv := invocation(s, payload(t, name))
		inv.Settings = map[string]any{"los_url": srv.URL, "crm_url": srv.URL}
		inv.Secrets = map[string]security.Secret{"los_token": security.NewSecret("los-tok"), "crm_token": security.NewSecret("crm-tok")}
		return inv
	}

	t.Run("a non-milestone event is answered and ignored", func(t *testing.T) {
		res := e.Run(context.Background(), inv("encompass-loan-create.json"))
		if res.Status != StatusSucceeded || res.Answer == nil || len(crm.Requests()) != 0 {
			t.Fatalf("%s %s answer %v requests %v", res.Status, res.Error, res.Answer, crm.Requests())
		}
	})
	t.Run("a milestone fetches the loan and creates a CRM task", func(t *testing.T) {
		res := e.Run(context.Background(), inv("encompass-loan-milestone.json"))
		if res.Status != StatusSucceeded || res.Answer != nil {
			t.Fatalf("%s: %s", res.Status, res.Error)
		}
		reqs := crm.Requests()
		if len(reqs) != 2 || !strings.HasPrefix(reqs[0], "GET /encompass/v3/loans/af43e4cd-cf58-4a7f-ba8a-5bea2496ec2d Bearer los-tok") ||
			!strings.HasPrefix(reqs[1], "POST /tasks Bearer crm-tok") || !strings.Contains(reqs[1], `"milestone":"Started"`) {
			t.Errorf("requests %q", reqs)
		}
		if strings.Contains(toJSON(res), "crm-tok") {
			t.Error("token in the result")
		}
	})
	t.Run("the same event again is dropped as stale", func(t *testing.T) {
		before := len(crm.Requests())
		res := e.Run(context.Background(), inv("encompass-loan-milestone.json"))
		if res.Answer == nil || toJSON(res.Answer.Body) != `{"ignored":"stale","last_seen":"2020-02-11T19:42:23.262Z"}` || len(crm.Requests()) != before {
			t.Errorf("answer %v, %d new requests", toJSON(res.Answer), len(crm.Requests())-before)
		}
	})
}

func TestShippedSnapdocsClosing(t *testing.T) {
	s := shipped(t, "snapdocs-closing")
	crm := &fakeCRM{}
	srv := httptest.NewServer(http.HandlerFunc(crm.handler))
	defer srv.Close()
	e, _, _ := testEngine(t)
	run := func(body map[string]any) *Result {
		inv := invocation(s, body)
		inv.Settings = map[string]any{"crm_url": srv.URL}
		inv.Secrets = map[string]security.Secret{"crm_token": security.NewSecret("crm-tok")}
		return e.Run(context.Background(), inv)
	}
	ev := payload(t, "snapdocs-preview-available.json")

	if res := run(ev); res.Status != StatusSucceeded || res.Answer != nil || len(crm.Requests()) != 1 {
		t.Fatalf("first delivery: %s %s requests %v", res.Status, res.Error, crm.Requests())
	}
	if !strings.Contains(crm.Requests()[0], `"event":"closing_preview_ready"`) {
		t.Errorf("CRM got %s", crm.Requests()[0])
	}
	tests := []struct {
		name   string
		change func(map[string]any)
		answer string
	}{
		{"a duplicate delivery is dropped", func(map[string]any) {}, `{"event_id":"572f592a-fbec-49d9-a28a-88d8e38175be","ignored":"duplicate"}`},
		{"an older event is dropped", func(m map[string]any) { m["event_id"] = "older"; m["created_at"] = 1618936000.0 },
			`{"event_id":"older","ignored":"older than the last event handled"}`},
		{"an unknown event is ignored", func(m map[string]any) { m["event_name"] = "borrower.waved" }, `{"ignored":"unhandled event"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{}
			for k, v := range ev {
				body[k] = v
			}
			tc.change(body)
			res := run(body)
			if res.Answer == nil || toJSON(res.Answer.Body) != tc.answer || len(crm.Requests()) != 1 {
				t.Errorf("answer %s, CRM requests %d", toJSON(res.Answer), len(crm.Requests()))
			}
		})
	}
	t.Run("a newer event goes through", func(t *testing.T) {
		body := map[string]any{}
		for k, v := range ev {
			body[k] = v
		}
		body["event_id"], body["created_at"], body["event_name"] = "newer", 1618936099.0, "closing.completed"
		if res := run(body); res.Status != StatusSucceeded || len(crm.Requests()) != 2 {
			t.Errorf("%s %s, CRM requests %d", res.Status, res.Error, len(crm.Requests()))
		}
	})
}

func TestShippedForward(t *testing.T) {
	s := shipped(t, "forward")
	var got struct {
		ct, body, run string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.ct, got.body, got.run = r.Header.Get("Content-Type"), string(b), r.Header.Get("X-Pushbackd-Run-Id")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"queued": true}`)
	}))
	defer srv.Close()
	e, _, _ := testEngine(t)

	inv := invocation(s, map[string]any{"a": 1})
	inv.Settings = map[string]any{"forward_url": srv.URL + "/in"}
	res := e.Run(context.Background(), inv)
	if res.Answer == nil || res.Answer.Status != 202 || !reflect.DeepEqual(res.Answer.Body, map[string]any{"queued": true}) {
		t.Fatalf("%s %s answer %+v", res.Status, res.Error, res.Answer)
	}
	if got.ct != "application/json" || got.body != `{"a":1}` || got.run != "run-1" {
		t.Errorf("downstream saw %+v", got)
	}

	t.Run("an unreachable downstream answers 502", func(t *testing.T) {
		inv.Settings = map[string]any{"forward_url": "http://127.0.0.1:1/in"}
		res := e.Run(context.Background(), inv)
		if res.Answer == nil || res.Answer.Status != 502 || !strings.Contains(toJSON(res.Answer.Body), "connection refused") {
			t.Errorf("answer %s", toJSON(res.Answer))
		}
	})
}

func TestShippedDemoEcho(t *testing.T) {
	s := shipped(t, "demo-echo")
	e, _, _ := testEngine(t)
	tests := []struct {
		name string
		body any
		site *Ref
		want string
	}{
		{"an Encompass event names its eventType", payload(t, "encompass-loan-milestone.json"), nil,
			`{"code":200,"endpoint":"encompass","event":"milestone","message":"received","partner":"acme","run_id":"run-1","site":null,"status":"OK"}`},
		{"a Snapdocs event names its event_name", payload(t, "snapdocs-preview-available.json"), &Ref{ID: "retail"},
			`{"code":200,"endpoint":"encompass","event":"borrower.preview_available","message":"received","partner":"acme","run_id":"run-1","site":"retail","status":"OK"}`},
		{"a text body has no event", "just text", nil,
			`{"code":200,"endpoint":"encompass","event":null,"message":"received","partner":"acme","run_id":"run-1","site":null,"status":"OK"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := invocation(s, tc.body)
			inv.Site = tc.site
			res := e.Run(context.Background(), inv)
			b, _ := json.Marshal(res.Answer.Body)
			if res.Status != StatusSucceeded || res.Answer.Status != 200 || string(b) != tc.want {
				t.Errorf("%s %s answer %s", res.Status, res.Error, b)
			}
		})
	}
}
