package saga

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/pushbackd/pushbackd/security"
)

const benchSaga = `
name: bench
steps:
  - name: gate
    when: body.eventType != "milestone"
    respond: {body: {ignored: true}}
  - name: ids
    set: {loan: "${ body.meta.resourceId }", user: "${ body.meta.userId }"}
  - name: more
    set: {milestone: "${ body.meta.payload.event.updateMilestones[0].title }"}
  - name: sig
    set: {sig: "${ hmac_sha256(secret('key'), raw) }"}
  - name: answer
    respond:
      status: 200
      body: {loan: "${ vars.loan }", milestone: "${ vars.milestone }", by: "${ vars.user }", sig: "${ vars.sig }"}
`

const benchHTTP = `
name: benchhttp
steps:
  - name: call
    http:
      method: POST
      url: ${ settings.crm_url }/loans/${ body.meta.resourceId }/tasks
      headers: {Authorization: "Bearer ${ secret('key') }", X-Event: "${ body.eventId }"}
      query: {source: encompass, user: "${ body.meta.userId }"}
      json:
        loan: ${ body.meta.resourceId }
        milestone: ${ body.meta.payload.event.updateMilestones[0].title }
        at: ${ body.eventTime }
        tags: [encompass, "${ body.eventType }"]
`

func benchInvocation(b testing.TB, s *Saga) *Invocation {
	inv := invocation(s, payload(b, "encompass-loan-milestone.json"))
	inv.Settings = map[string]any{"crm_url": "http://crm.example"}
	inv.Secrets = map[string]security.Secret{"key": security.NewSecret("k3y")}
	return inv
}

func BenchmarkEvalWhen(b *testing.B) {
	s := mustParse(b, "bench", benchSaga)
	inv := benchInvocation(b, s)
	ev := newEvaluator(newEnv(inv, newRunState(inv.Secrets)), defaultExprLimits())
	p := s.Steps[0].when
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ev.evalBool(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderHTTPRequest(b *testing.B) {
	s := mustParse(b, "benchhttp", benchHTTP)
	inv := benchInvocation(b, s)
	ev := newEvaluator(newEnv(inv, newRunState(inv.Secrets)), defaultExprLimits())
	a := s.Steps[0].Action.http
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.render(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunPureSaga(b *testing.B) {
	s := mustParse(b, "bench", benchSaga)
	inv := benchInvocation(b, s)
	e := NewEngine(EngineOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := e.Run(ctx, inv); res.Status != StatusSucceeded || res.Answer == nil {
			b.Fatalf("%s: %s", res.Status, res.Error)
		}
	}
}

// BenchmarkMarshalResult is what filing a finished run costs on top of running it: the
// dispatcher stores the Result as JSON.
func BenchmarkMarshalResult(b *testing.B) {
	s := mustParse(b, "bench", benchSaga)
	res := NewEngine(EngineOptions{}).Run(context.Background(), benchInvocation(b, s))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := json.Marshal(res)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.ReportMetric(float64(n), "bytes")
}
