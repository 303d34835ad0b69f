package sagatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/gateway"
	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/yamlconf"
)

// start is the fake clock's time when a case begins: fixed, so runs are reproducible.
func start() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// caseTimeout bounds one case in real time: the fake clock makes waits free, so only
// work (expression budgets, many tries) takes time, and a case is never worth more.
const caseTimeout = 30 * time.Second

// maxMockBody bounds what a mocked call reads of the request it records.
const maxMockBody = 1 << 20

// Result is the outcome of one case.
type Result struct {
	Saga     string    `json:"saga"`
	Case     string    `json:"case"`
	At       string    `json:"at"` // file:line:col of the case
	Passed   bool      `json:"passed"`
	Status   string    `json:"status,omitempty"` // the run's final status
	Failures []Failure `json:"failures,omitempty"`
}

// Failure is one expectation not met: where (a path such as steps.fetch.attempts or
// answer.body.id), what the run gave and what the case wanted.
type Failure struct {
	Path string `json:"path"`
	Got  any    `json:"got"`
	Want any    `json:"want"`
	Note string `json:"note,omitempty"`
}

func (f Failure) String() string {
	if f.Note != "" && f.Got == nil && f.Want == nil {
		return f.Path + ": " + f.Note
	}
	s := fmt.Sprintf("%s: got %s, want %s", f.Path, show(f.Got), show(f.Want))
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}

func show(v any) string {
	if v == nil {
		return "nothing"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// Run runs every case of f against s, under cfg's partners (their settings, secrets and
// egress lists).
func Run(ctx context.Context, cfg *config.Config, s *saga.Saga, f *File) []Result {
	out := make([]Result, 0, len(f.Cases))
	for i := range f.Cases {
		out = append(out, runCase(ctx, cfg, s, f, &f.Cases[i]))
	}
	return out
}

func runCase(ctx context.Context, cfg *config.Config, s *saga.Saga, f *File, c *Case) Result {
	res := Result{Saga: s.Name, Case: c.Name, At: fmt.Sprintf("%s:%d:%d", f.Path, c.Pos.Line, c.Pos.Column)}
	fail := func(path string, got, want any, note string) {
		res.Failures = append(res.Failures, Failure{Path: path, Got: got, Want: want, Note: note})
	}
	inv, err := invocation(cfg, s, c)
	if err != nil {
		fail("request", nil, nil, err.Error())
		return res
	}
	clock := &fakeClock{now: start()}
	kv := newCaseKV(clock)
	for k, v := range c.KV {
		b, err := json.Marshal(v)
		if err == nil {
			err = kv.Put(ctx, inv.Partner.ID, k, b, store.PutOptions{})
		}
		if err != nil {
			fail("kv."+k, nil, nil, "cannot store: "+err.Error())
			return res
		}
	}
	mt := &mockTransport{mocks: c.Mocks, used: map[string]int{}, sent: map[string][]sentRequest{}, secrets: inv.Secrets}
	eng := saga.NewEngine(saga.EngineOptions{Clock: clock, KV: kv, Transport: mt,
		Jitter: func(d time.Duration) time.Duration { return d }})
	ctx, cancel := context.WithTimeout(ctx, caseTimeout)
	defer cancel()
	run := eng.Run(ctx, inv)
	res.Status = run.Status

	e := c.Expect
	if e.Status != "" && run.Status != e.Status {
		note := ""
		if run.Error != "" {
			note = "error: " + run.Error
		}
		fail("status", run.Status, e.Status, note)
	}
	if e.Error != "" && !strings.Contains(run.Error, e.Error) {
		fail("error", run.Error, e.Error, "the error must contain the text wanted")
	}
	for _, name := range slices.Sorted(maps.Keys(e.Steps)) {
		want := e.Steps[name]
		rec := findStep(run.Steps, name)
		got := NotReached
		if rec != nil {
			got = rec.Status
		}
		if want.Status != "" && got != want.Status {
			note := ""
			if rec != nil && rec.Error != "" {
				note = "error: " + rec.Error
			}
			fail("steps."+name+".status", got, want.Status, note)
		}
		if want.Attempts != 0 {
			n := 0
			if rec != nil {
				n = rec.Attempts
			}
			if n != want.Attempts {
				fail("steps."+name+".attempts", n, want.Attempts, "")
			}
		}
	}
	if a := e.Answer; a != nil {
		if run.Answer == nil {
			fail("answer", nil, a, "the run gave no answer")
		} else {
			if a.Status != 0 && run.Answer.Status != a.Status {
				fail("answer.status", run.Answer.Status, a.Status, "")
			}
			got := map[string]string{}
			for k, v := range run.Answer.Headers {
				got[strings.ToLower(k)] = v
			}
			for _, k := range slices.Sorted(maps.Keys(a.Headers)) {
				if g, ok := got[strings.ToLower(k)]; !ok || g != a.Headers[k] {
					fail("answer.headers."+k, nilIfEmpty(g, ok), a.Headers[k], "")
				}
			}
			if a.Body != nil {
				subset("answer.body", run.Answer.Body, a.Body, fail)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.KV)) {
		b, found, err := kv.Get(ctx, inv.Partner.ID, k)
		if err != nil {
			fail("kv."+k, nil, nil, "cannot read: "+err.Error())
			continue
		}
		var got any
		if found {
			_ = json.Unmarshal(b, &got)
		}
		want := e.KV[k]
		switch {
		case want == nil && found:
			fail("kv."+k, got, nil, "the key must be absent")
		case want != nil && !found:
			fail("kv."+k, nil, want, "the key is absent")
		case want != nil:
			subsetExact("kv."+k, got, want, fail)
		}
	}
	for _, step := range slices.Sorted(maps.Keys(e.Requests)) {
		wants, sent := e.Requests[step], mt.sent[step]
		if len(sent) != len(wants) {
			fail("requests."+step, len(sent), len(wants), "number of requests sent")
		}
		for i := range min(len(sent), len(wants)) {
			w, g, p := wants[i], sent[i], fmt.Sprintf("requests.%s[%d]", step, i)
			if w.Method != "" && !strings.EqualFold(g.Method, w.Method) {
				fail(p+".method", g.Method, w.Method, "")
			}
			if w.URL != "" && g.URL != w.URL {
				fail(p+".url", g.URL, w.URL, "")
			}
			for _, k := range slices.Sorted(maps.Keys(w.Headers)) {
				if v, ok := g.Headers[strings.ToLower(k)]; !ok || v != w.Headers[k] {
					fail(p+".headers."+k, nilIfEmpty(v, ok), w.Headers[k], "")
				}
			}
			if w.Body != nil {
				subset(p+".body", g.Body, w.Body, fail)
			}
		}
	}
	for _, p := range mt.problems {
		fail("mocks", nil, nil, p)
	}
	for _, step := range slices.Sorted(maps.Keys(c.Mocks)) {
		if n, used := len(c.Mocks[step]), mt.used[step]; used < n {
			fail("mocks."+step, used, n, "answers used; a step name spelt wrong, or a run that stopped sooner than the case expects")
		}
	}
	res.Passed = len(res.Failures) == 0
	return res
}

func nilIfEmpty(s string, ok bool) any {
	if !ok {
		return nil
	}
	return s
}

func findStep(recs []saga.StepRecord, name string) *saga.StepRecord {
	for i := range recs {
		if recs[i].Name == name {
			return &recs[i]
		}
	}
	return nil
}

// invocation is the case's request as the gateway would hand it to the engine, with the
// case's settings and secrets laid over the partner's.
func invocation(cfg *config.Config, s *saga.Saga, c *Case) (*saga.Invocation, error) {
	r := c.Request
	sample := gateway.Sample{Partner: r.Partner, Site: r.Site, Endpoint: r.Endpoint, Method: r.Method, Headers: r.Headers, Query: r.Query}
	switch {
	case r.Raw != nil:
		sample.Body, _ = json.Marshal(*r.Raw)
	case r.Body != nil:
		b, err := json.Marshal(r.Body)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		sample.Body = b
	}
	inv, err := gateway.SampleInvocation(cfg, s, &sample)
	if err != nil {
		return nil, err
	}
	inv.RunID = "test-run"
	inv.Request.ReceivedAt = start()
	inv.Settings = maps.Clone(inv.Settings)
	if inv.Settings == nil {
		inv.Settings = map[string]any{}
	}
	maps.Copy(inv.Settings, c.Settings)
	inv.Secrets = maps.Clone(inv.Secrets)
	if inv.Secrets == nil {
		inv.Secrets = map[string]security.Secret{}
	}
	for k, v := range c.Secrets {
		inv.Secrets[k] = security.NewSecret(v)
	}
	return inv, nil
}

// subset reports where got lacks what want holds: a map needs want's keys (others may be
// there), a list every item in order, a scalar the same value (numbers compared as JSON).
func subset(path string, got, want any, fail func(path string, got, want any, note string)) {
	compare(path, normalize(got), normalize(want), false, fail)
}

// subsetExact is subset with maps compared whole.
func subsetExact(path string, got, want any, fail func(path string, got, want any, note string)) {
	compare(path, normalize(got), normalize(want), true, fail)
}

func compare(path string, got, want any, exact bool, fail func(path string, got, want any, note string)) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			fail(path, got, want, "not a mapping")
			return
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			gv, ok := g[k]
			if !ok {
				fail(path+"."+k, nil, w[k], "missing")
				continue
			}
			compare(path+"."+k, gv, w[k], exact, fail)
		}
		if exact {
			for _, k := range slices.Sorted(maps.Keys(g)) {
				if _, ok := w[k]; !ok {
					fail(path+"."+k, g[k], nil, "not expected")
				}
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			fail(path, got, want, "")
			return
		}
		for i := range w {
			compare(path+"["+strconv.Itoa(i)+"]", g[i], w[i], exact, fail)
		}
	default:
		if !reflect.DeepEqual(got, want) {
			fail(path, got, want, "")
		}
	}
}

// normalize makes v what encoding/json would decode it as, so a YAML 1 equals a JSON 1.0.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

// fakeClock moves only when the engine sleeps: a retry wait takes no time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(max(d, 0))
	return nil
}

// sentRequest is one request an http step sent, secrets replaced by "<secret>".
type sentRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"` // lower-case names
	Body    any               `json:"body,omitempty"`
}

// mockTransport answers http steps from the case's mocks, in-process: nothing is dialled.
type mockTransport struct {
	mocks   map[string][]Mock
	secrets map[string]security.Secret

	mu       sync.Mutex
	used     map[string]int
	sent     map[string][]sentRequest
	problems []string
}

// mockTimeout is a mocked timeout: a net.Error that says it timed out.
type mockTimeout struct{}

func (mockTimeout) Error() string   { return "i/o timeout (mocked)" }
func (mockTimeout) Timeout() bool   { return true }
func (mockTimeout) Temporary() bool { return true }

func (m *mockTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	step := saga.CallingStep(req.Context())
	var raw []byte
	if req.Body != nil {
		var err error
		raw, err = io.ReadAll(io.LimitReader(req.Body, maxMockBody+1))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(raw) > maxMockBody {
			return nil, fmt.Errorf("request body over %d bytes: a saga test does not take it", maxMockBody)
		}
	}
	sent := sentRequest{Method: req.Method, URL: m.scrub(req.URL.String()), Headers: map[string]string{}}
	for k, vs := range req.Header {
		sent.Headers[strings.ToLower(k)] = m.scrub(strings.Join(vs, ", "))
	}
	if req.Host != "" && req.Host != req.URL.Host {
		sent.Headers["host"] = req.Host
	}
	if len(raw) > 0 {
		sent.Body = decodeSent(req.Header.Get("Content-Type"), m.scrub(string(raw)))
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent[step] = append(m.sent[step], sent)
	list, n := m.mocks[step], m.used[step]
	if n >= len(list) {
		msg := fmt.Sprintf("step %s sent %s %s but the case has no mocks.%s", step, req.Method, sent.URL, step)
		if len(list) > 0 {
			msg = fmt.Sprintf("step %s sent request %d but mocks.%s has %d answers", step, n+1, step, len(list))
		}
		m.problems = append(m.problems, msg)
		return nil, errors.New("no mocked answer: " + msg)
	}
	m.used[step]++
	mk := list[n]
	switch {
	case mk.Timeout:
		return nil, mockTimeout{}
	case mk.Error != "":
		return nil, errors.New(mk.Error)
	}
	h := http.Header{}
	for k, v := range mk.Headers {
		h.Set(k, v)
	}
	var body []byte
	switch b := mk.Body.(type) {
	case nil:
	case string:
		body = []byte(b)
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			return nil, fmt.Errorf("mocks.%s: body: %w", step, err)
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
	}
	status := mk.Status
	if status == 0 {
		status = http.StatusOK
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status), Header: h,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// scrub replaces each secret's text with "<secret>", so a result (which -json prints)
// shows where a secret went without showing it.
func (m *mockTransport) scrub(s string) string {
	for _, sec := range m.secrets {
		if v := string(sec.Reveal()); len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "<secret>")
		}
	}
	return s
}

// decodeSent reads a sent body as the test compares it: JSON as a value, a form as a
// mapping, anything else as text.
func decodeSent(contentType, raw string) any {
	switch {
	case strings.Contains(contentType, "json"):
		var v any
		if json.Unmarshal([]byte(raw), &v) == nil {
			return v
		}
	case strings.HasPrefix(contentType, "application/x-www-form-urlencoded"):
		if q, err := url.ParseQuery(raw); err == nil {
			out := map[string]any{}
			for k, vs := range q {
				out[k] = strings.Join(vs, ",")
			}
			return out
		}
	}
	return raw
}

// LoadFile reads and parses a test file.
func LoadFile(path string) (*File, error) {
	src, err := yamlconf.ReadFile(path) // bounded: a test file is no bigger than a config file
	if err != nil {
		return nil, err
	}
	return Parse(path, src)
}
