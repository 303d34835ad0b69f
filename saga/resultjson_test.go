package saga

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestResultAppendJSONMatchesMarshal(t *testing.T) {
	eng := NewEngine(EngineOptions{})
	ok := eng.Run(context.Background(), benchInvocation(t, mustParse(t, "bench", benchSaga)))
	failing := mustParse(t, "undo", `name: undo
steps:
  - {name: a, set: {x: "<&>"}, compensate: {log: {message: undone}}}
  - {name: b, fail: {message: "no \u2028 way"}}
on_failure: {respond: {status: 409, headers: {X-Why: "b"}, body: {ok: false, n: 1.5e-9}}}
`)
	failed := eng.Run(context.Background(), invocation(failing, nil))
	if failed.Status != StatusFailed && failed.Status != StatusCompensated {
		t.Fatalf("the failing saga ended %s", failed.Status)
	}
	india := time.FixedZone("IST", 5*3600+1800)
	step := StepRecord{Name: "s\xff", Action: "http", Status: "failed", Attempts: 3, Started: time.Date(2026, 1, 2, 3, 4, 5, 600, india),
		Duration: -time.Second, Input: map[string]any{"k": []any{nil, true}}, Output: "", Error: "e"}
	for name, r := range map[string]*Result{
		"pure saga":     ok,
		"failed saga":   failed,
		"zero":          {},
		"hand-made":     {Answer: &Answer{Status: 0, Headers: map[string]string{}, Body: map[string]any{}}, Steps: []StepRecord{step, {}}, Compensations: []StepRecord{step}, OnFailure: &step, Vars: map[string]any{"v": 1.0}},
		"empty lists":   {Steps: []StepRecord{}, Vars: map[string]any{}},
		"year 10000":    {Started: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"step in 10000": {Steps: []StepRecord{{Started: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		"NaN var":       {Vars: map[string]any{"n": math.NaN()}},
		"NaN output":    {Steps: []StepRecord{{Output: math.Inf(1)}}},
		"NaN answer":    {Answer: &Answer{Body: math.NaN()}},
		"step with tries": {Steps: []StepRecord{{Name: "t", Attempts: 12, TriesDropped: 2, Tries: []Try{
			{Status: "failed", Started: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Duration: time.Second, Error: "<\u2028>", HTTPStatus: 503},
			{Status: "succeeded", Started: time.Date(2026, 1, 2, 3, 4, 6, 0, india)}}}}},
		"try in 10000": {Steps: []StepRecord{{Tries: []Try{{Started: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}}},
	} {
		want, wantErr := json.Marshal(r)
		got, err := r.AppendJSON([]byte("x"))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json says %v", name, err, wantErr)
			continue
		}
		if err != nil {
			if string(got) != "x" {
				t.Errorf("%s: a failed append left %q", name, got)
			}
			continue
		}
		if !bytes.Equal(got[1:], want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got[1:], want)
		}
	}
}

func BenchmarkAppendResultJSON(b *testing.B) {
	res := NewEngine(EngineOptions{}).Run(context.Background(), benchInvocation(b, mustParse(b, "bench", benchSaga)))
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = res.AppendJSON(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
