package saga

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/store"
	"github.com/pushbackd/pushbackd/store/memory"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// flakyKV fails its first `failures` reads, or blocks every read until the context ends.
type flakyKV struct {
	store.KV
	mu       sync.Mutex
	failures int
	block    bool
	gets     int
}

func (f *flakyKV) Get(ctx context.Context, ns, key string) ([]byte, bool, error) {
	f.mu.Lock()
	f.gets++
	n, block := f.gets, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, false, ctx.Err()
	}
	if n <= f.failures {
		return nil, false, errors.New("kv unavailable")
	}
	return f.KV.Get(ctx, ns, key)
}

func (f *flakyKV) Gets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets
}

func names(recs []StepRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Name + ":" + r.Status
	}
	return out
}

func TestCompensation(t *testing.T) {
	s := mustParse(t, "comp", `
name: comp
steps:
  - name: first
    set: {a: 1}
    compensate: {log: {message: "undo first after ${ error.step }"}}
  - name: second
    kv: {op: put, key: k, value: 2}
    compensate: {kv: {op: delete, key: k}}
  - name: skipped
    when: "false"
    set: {b: 1}
    compensate: {log: {message: never}}
  - name: no_undo
    set: {c: 1}
  - name: breaks_undo
    set: {d: 1}
    compensate: {fail: "cannot undo breaks_undo"}
  - name: boom
    fail: "boom: ${ body.why }"
  - name: after
    set: {e: 1}
on_failure:
  respond: {status: 422, body: {failed: "${ error.step }", why: "${ error.message }", second: "${ steps.second.status }"}}
`)
	e, _, kv := testEngine(t)
	res := e.Run(context.Background(), invocation(s, map[string]any{"why": "bad input"}))

	t.Run("a compensation that failed ends the run compensation_failed, with the failing step's message", func(t *testing.T) {
		if res.Status != StatusCompensationFailed || res.Error != "boom: bad input" || res.FailedStep != "boom" {
			t.Errorf("status %q, error %q, failed step %q", res.Status, res.Error, res.FailedStep)
		}
	})
	t.Run("steps after the failure do not run", func(t *testing.T) {
		want := []string{"first:compensated", "second:compensated", "skipped:skipped", "no_undo:succeeded",
			"breaks_undo:succeeded", "boom:failed"}
		if got := names(res.Steps); !reflect.DeepEqual(got, want) {
			t.Errorf("steps = %v\nwant    %v", got, want)
		}
	})
	t.Run("succeeded steps are compensated in reverse order and a failing one does not stop the rest", func(t *testing.T) {
		want := []string{"breaks_undo:failed", "second:succeeded", "first:succeeded"}
		if got := names(res.Compensations); !reflect.DeepEqual(got, want) {
			t.Errorf("compensations = %v\nwant            %v", got, want)
		}
		if e := res.Compensations[0].Error; e != "cannot undo breaks_undo" {
			t.Errorf("failed compensation recorded error %q", e)
		}
		if in := toJSON(res.Compensations[2].Input); !strings.Contains(in, "undo first after boom") {
			t.Errorf("compensation input %s does not show error.step", in)
		}
	})
	t.Run("compensations really ran", func(t *testing.T) {
		if _, found, _ := kv.Get(context.Background(), "acme", "k"); found {
			t.Error("kv key written by second is still there")
		}
	})
	t.Run("on_failure runs last, sees the error and answers the sender", func(t *testing.T) {
		if res.OnFailure == nil || res.OnFailure.Status != StatusSucceeded {
			t.Fatalf("on_failure record = %+v", res.OnFailure)
		}
		want := &Answer{Status: 422, Body: map[string]any{"failed": "boom", "why": "boom: bad input", "second": "compensated"},
			BodyJSON: []byte(`{"failed":"boom","second":"compensated","why":"boom: bad input"}`)}
		if !reflect.DeepEqual(res.Answer, want) {
			t.Errorf("answer = %+v, want %+v", res.Answer, want)
		}
	})
}

func TestARunWithNothingToCompensateEndsFailed(t *testing.T) {
	s := mustParse(t, "f", `
name: f
steps:
  - name: a
    set: {x: 1}
  - name: b
    kv: {op: get, key: k}
`)
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = &flakyKV{KV: memory.NewKV(nil), failures: 99} })
	res := e.Run(context.Background(), invocation(s, nil))
	if res.Status != StatusFailed || res.Answer != nil || len(res.Compensations) != 0 {
		t.Fatalf("status %q answer %v compensations %v", res.Status, res.Answer, res.Compensations)
	}
	if res.Error != "b: kv get: kv unavailable" {
		t.Errorf("error = %q", res.Error)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		retry        string
		failures     int
		wantStatus   string
		wantAttempts int
		wantSleeps   []time.Duration
	}{
		{"a step without retry is tried once", "", 1, StatusFailed, 1, nil},
		{"attempts counts the first try", "{attempts: 3, backoff: 1s}", 99, StatusFailed, 3, []time.Duration{time.Second, 2 * time.Second}},
		{"a step that recovers stops retrying", "{attempts: 5, backoff: 1s}", 2, StatusSucceeded, 3, []time.Duration{time.Second, 2 * time.Second}},
		{"backoff doubles up to max_backoff", "{attempts: 6, backoff: 1s, max_backoff: 5s}", 99, StatusFailed, 6,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}},
		{"a large attempt count does not overflow the wait", "{attempts: 80, backoff: 1s, max_backoff: 1h}", 99, StatusFailed, 80, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "name: r\nsteps:\n  - name: read\n    kv: {op: get, key: k}\n"
			if tc.retry != "" {
				src += "    retry: " + tc.retry + "\n"
			}
			s := mustParse(t, "r", src)
			kv := &flakyKV{KV: memory.NewKV(nil), failures: tc.failures}
			e, clock, _ := testEngine(t, func(o *EngineOptions) { o.KV = kv })
			res := e.Run(context.Background(), invocation(s, nil))
			if res.Status != tc.wantStatus || res.Steps[0].Attempts != tc.wantAttempts || kv.Gets() != tc.wantAttempts {
				t.Fatalf("status %q attempts %d gets %d, want %q %d", res.Status, res.Steps[0].Attempts, kv.Gets(), tc.wantStatus, tc.wantAttempts)
			}
			sleeps := clock.Sleeps()
			if tc.wantSleeps != nil && !reflect.DeepEqual(sleeps, tc.wantSleeps) {
				t.Errorf("waits = %v, want %v", sleeps, tc.wantSleeps)
			}
			for _, d := range sleeps {
				if d <= 0 || d > time.Hour {
					t.Errorf("wait %v out of range", d)
				}
			}
			var total time.Duration
			for _, d := range sleeps {
				total += d
			}
			if res.Steps[0].Duration != total {
				t.Errorf("step duration %v, want the waits' sum %v", res.Steps[0].Duration, total)
			}
		})
	}

	t.Run("equal jitter stays between half and all of the wait", func(t *testing.T) {
		for i := 0; i < 1000; i++ {
			if d := equalJitter(10 * time.Second); d < 5*time.Second || d > 10*time.Second {
				t.Fatalf("equalJitter(10s) = %v", d)
			}
		}
	})

	t.Run("a fail action is not retried", func(t *testing.T) {
		s := mustParse(t, "r", "name: r\nsteps:\n  - {name: no, fail: nope, retry: {attempts: 5}}\n")
		e, clock, _ := testEngine(t)
		res := e.Run(context.Background(), invocation(s, nil))
		if res.Steps[0].Attempts != 1 || len(clock.Sleeps()) != 0 {
			t.Errorf("attempts %d, waits %v", res.Steps[0].Attempts, clock.Sleeps())
		}
	})
}

func TestTimeouts(t *testing.T) {
	t.Run("a step timeout fails the step and says so", func(t *testing.T) {
		s := mustParse(t, "t", "name: t\nsteps:\n  - {name: slow, kv: {op: get, key: k}, timeout: 20ms}\n")
		e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = &flakyKV{KV: memory.NewKV(nil), block: true} })
		res := e.Run(context.Background(), invocation(s, nil))
		if res.Status != StatusFailed || !strings.Contains(res.Error, "step timed out after 20ms") {
			t.Errorf("status %q error %q", res.Status, res.Error)
		}
	})

	t.Run("a step timeout covers its retries", func(t *testing.T) {
		s := mustParse(t, "t", "name: t\nsteps:\n  - {name: slow, kv: {op: get, key: k}, timeout: 20ms, retry: {attempts: 50, backoff: 1ms}}\n")
		e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = &flakyKV{KV: memory.NewKV(nil), block: true} })
		res := e.Run(context.Background(), invocation(s, nil))
		if res.Status != StatusFailed || res.Steps[0].Attempts != 1 {
			t.Errorf("status %q attempts %d", res.Status, res.Steps[0].Attempts)
		}
	})

	t.Run("a saga timeout fails the run and compensation still runs", func(t *testing.T) {
		s := mustParse(t, "t", `
name: t
timeout: 20ms
steps:
  - name: put
    kv: {op: put, key: k, value: 1}
    compensate: {kv: {op: delete, key: k}}
  - name: slow
    kv: {op: get, key: k}
`)
		mem := memory.NewKV(nil)
		kv := &flakyKV{KV: mem, block: true}
		e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = kv })
		res := e.Run(context.Background(), invocation(s, nil))
		if res.Status != StatusCompensated || !strings.Contains(res.Error, "saga timed out after 20ms") {
			t.Fatalf("status %q error %q", res.Status, res.Error)
		}
		if len(res.Compensations) != 1 || res.Compensations[0].Status != StatusSucceeded {
			t.Errorf("compensations %+v", res.Compensations)
		}
	})

	t.Run("a cancelled caller stops the run before the next step", func(t *testing.T) {
		s := mustParse(t, "t", "name: t\nsteps:\n  - {name: a, set: {x: 1}}\n")
		e, _, _ := testEngine(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := e.Run(ctx, invocation(s, nil))
		if res.Status != StatusFailed || !strings.Contains(res.Error, "context canceled") {
			t.Errorf("status %q error %q", res.Status, res.Error)
		}
	})
}

func TestContinueOnErrorLeavesTheRunGoing(t *testing.T) {
	s := mustParse(t, "c", `
name: c
steps:
  - name: optional
    kv: {op: get, key: k}
    continue_on_error: true
  - name: answer
    respond:
      body: {status: "${ steps.optional.status }", error: "${ steps.optional.error }", attempts: "${ steps.optional.attempts }"}
`)
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = &flakyKV{KV: memory.NewKV(nil), failures: 99} })
	res := e.Run(context.Background(), invocation(s, nil))
	if res.Status != StatusSucceeded || res.Steps[0].Status != StatusFailed {
		t.Fatalf("run %q, optional step %q", res.Status, res.Steps[0].Status)
	}
	want := map[string]any{"status": "failed", "error": "kv get: kv unavailable", "attempts": 1}
	if !reflect.DeepEqual(res.Answer.Body, want) {
		t.Errorf("answer body %v, want %v", res.Answer.Body, want)
	}
}

func TestRespondEndsTheRun(t *testing.T) {
	s := mustParse(t, "r", `
name: r
steps:
  - name: ignore
    when: body.type != "wanted"
    respond: {status: 202, headers: {X-Why: ignored}, body: {ignored: true}}
  - name: never
    fail: should not run
`)
	e, _, _ := testEngine(t)
	res := e.Run(context.Background(), invocation(s, map[string]any{"type": "other"}))
	want := &Answer{Status: 202, Headers: map[string]string{"X-Why": "ignored"}, Body: map[string]any{"ignored": true},
		BodyJSON: []byte(`{"ignored":true}`)}
	if res.Status != StatusSucceeded || !reflect.DeepEqual(res.Answer, want) || len(res.Steps) != 1 {
		t.Fatalf("status %q answer %+v steps %v", res.Status, res.Answer, names(res.Steps))
	}

	t.Run("a false when skips the step", func(t *testing.T) {
		res := e.Run(context.Background(), invocation(s, map[string]any{"type": "wanted"}))
		if got := names(res.Steps); !reflect.DeepEqual(got, []string{"ignore:skipped", "never:failed"}) {
			t.Errorf("steps %v", got)
		}
	})

	t.Run("a when that fails to evaluate fails the step", func(t *testing.T) {
		s := mustParse(t, "w", "name: w\nsteps:\n  - {name: a, when: 'body.x.y == 1', set: {a: 1}}\n")
		res := e.Run(context.Background(), invocation(s, map[string]any{}))
		if res.Status != StatusFailed || !strings.Contains(res.Error, "a: when: body.x.y == 1: cannot fetch y from <nil>") {
			t.Errorf("status %q error %q", res.Status, res.Error)
		}
	})

	t.Run("a status from a template is checked when it renders", func(t *testing.T) {
		s := mustParse(t, "w", "name: w\nsteps:\n  - {name: a, respond: {status: '${ body.code }'}}\n")
		if res := e.Run(context.Background(), invocation(s, map[string]any{"code": 201})); res.Answer == nil || res.Answer.Status != 201 {
			t.Errorf("answer %+v", res.Answer)
		}
		if res := e.Run(context.Background(), invocation(s, map[string]any{"code": 7})); res.Status != StatusFailed {
			t.Errorf("status 7 gave %q", res.Status)
		}
	})
}

func TestKVSteps(t *testing.T) {
	s := mustParse(t, "kv", `
name: kv
steps:
  - name: before
    kv: {op: get, key: "seen:${ body.id }"}
  - name: put
    kv: {op: put, key: "seen:${ body.id }", value: {at: "${ body.at }", n: 1}, ttl: 1h}
  - name: after
    kv: {op: get, key: "seen:${ body.id }"}
  - name: forget
    kv: {op: delete, key: "seen:${ body.id }"}
  - name: gone
    kv: {op: get, key: "seen:${ body.id }"}
  - name: answer
    respond: {body: ["${ steps.before.output }", "${ steps.after.output }", "${ steps.gone.output }"]}
`)
	e, _, kv := testEngine(t)
	res := e.Run(context.Background(), invocation(s, map[string]any{"id": "L1", "at": "2020-01-01"}))
	want := []any{nil, map[string]any{"at": "2020-01-01", "n": float64(1)}, nil}
	if res.Status != StatusSucceeded || !reflect.DeepEqual(res.Answer.Body, want) {
		t.Fatalf("status %q %s, body %v", res.Status, res.Error, toJSON(res.Answer))
	}
	t.Run("keys live in the partner's namespace", func(t *testing.T) {
		_ = kv.Put(context.Background(), "other", "seen:L1", []byte(`"other"`), store.PutOptions{})
		s := mustParse(t, "kv", "name: kv\nsteps:\n  - {name: g, kv: {op: get, key: 'seen:L1'}}\n")
		res := e.Run(context.Background(), invocation(s, nil))
		if res.Steps[0].Output != nil {
			t.Errorf("acme read another partner's key: %v", res.Steps[0].Output)
		}
	})
	t.Run("without a store kv steps fail clearly", func(t *testing.T) {
		e, _, _ := testEngine(t, func(o *EngineOptions) { o.KV = nil })
		res := e.Run(context.Background(), invocation(s, map[string]any{"id": "L1"}))
		if !strings.Contains(res.Error, "no store configured") {
			t.Errorf("error %q", res.Error)
		}
	})
}

func TestLogStepsWriteToTheEngineLogger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := mustParse(t, "l", `
name: l
steps:
  - name: note
    log: {level: warn, message: "got ${ body.id }", fields: {token: "${ secret('tok') }", n: 2}}
`)
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.Logger = zap.New(core) })
	inv := invocation(s, map[string]any{"id": "L1"})
	inv.Secrets = map[string]security.Secret{"tok": security.NewSecret("s3cr3t-value")}
	e.Run(context.Background(), inv)
	entries := logs.FilterMessage("got L1").All()
	if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel {
		t.Fatalf("log entries %v", logs.All())
	}
	f := entries[0].ContextMap()
	if f["run_id"] != "run-1" || f["partner"] != "acme" || f["token"] != "<secret>" || f["n"] != int64(2) {
		t.Errorf("fields %v", f)
	}
}

func TestSecretsAreRedactedInEverythingRecorded(t *testing.T) {
	const tok = "tok-ABC123-very-secret"
	s := mustParse(t, "sec", `
name: sec
steps:
  - name: build
    set: {auth: "Bearer ${ secret('crm_token') }", sig: "${ hmac_sha256(secret('crm_token'), raw) }"}
  - name: echo
    kv: {op: put, key: "k", value: "${ vars.auth }"}
  - name: read
    kv: {op: get, key: "k"}
  - name: boom
    fail: "rejected ${ steps.read.output }"
`)
	var cp recordingCheckpointer
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp })
	inv := invocation(s, map[string]any{"a": 1})
	inv.Secrets = map[string]security.Secret{"crm_token": security.NewSecret(tok)}
	res := e.Run(context.Background(), inv)

	all := toJSON(res) + toJSON(cp.states)
	if strings.Contains(all, tok) {
		t.Fatalf("the secret leaked into the result or a checkpoint:\n%s", all)
	}
	if res.Error != "rejected Bearer <secret>" {
		t.Errorf("error %q", res.Error)
	}
	if got := toJSON(res.Steps[2].Output); got != `"Bearer \u003csecret\u003e"` {
		t.Errorf("read output recorded as %s", got)
	}
	if sig, _ := res.Vars["sig"].(string); len(sig) != 64 {
		t.Errorf("a value derived from a secret is not the secret and stays: %q", sig)
	}

	t.Run("an unknown secret fails the step without naming any value", func(t *testing.T) {
		inv.Secrets = nil
		res := e.Run(context.Background(), inv)
		if res.Status != StatusFailed || !strings.Contains(res.Error, `secret("crm_token"): no such secret for this partner`) {
			t.Errorf("status %q error %q", res.Status, res.Error)
		}
	})
}

type recordingCheckpointer struct {
	mu     sync.Mutex
	states []*State
	err    error
}

func (c *recordingCheckpointer) Checkpoint(_ context.Context, st *State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states = append(c.states, st)
	return c.err
}

func TestCheckpointAndResume(t *testing.T) {
	s := mustParse(t, "cp", `
name: cp
steps:
  - name: one
    kv: {op: put, key: first, value: "${ run.attempt }"}
  - name: pure
    set: {a: "${ run.attempt }"}
  - name: two
    kv: {op: get, key: k}
    retry: {attempts: 3, backoff: 10s}
  - name: three
    set: {b: "${ steps.two.attempts }", c: "${ run.attempt }"}
`)
	var cp recordingCheckpointer
	kv := &flakyKV{KV: memory.NewKV(nil), failures: 1}
	e, clock, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = &cp; o.KV = kv })
	res := e.Run(context.Background(), invocation(s, nil))
	if res.Status != StatusSucceeded {
		t.Fatalf("run %s: %s", res.Status, res.Error)
	}

	t.Run("a checkpoint follows every step with effects and precedes every retry wait", func(t *testing.T) {
		var got []string
		for _, st := range cp.states {
			got = append(got, fmt.Sprintf("next=%d tries=%d wait=%v", st.Next, st.StepAttempts, !st.WaitUntil.IsZero()))
		}
		// None after the pure step: a resume re-runs it for free.
		want := []string{"next=1 tries=0 wait=false", "next=2 tries=1 wait=true", "next=3 tries=0 wait=false"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("checkpoints %v\nwant        %v", got, want)
		}
	})

	t.Run("a run resumes from its first unfinished step", func(t *testing.T) {
		st := cp.states[0] // after step one
		clock.sleeps = nil
		res := e.Resume(context.Background(), invocation(s, nil), st)
		if got := names(res.Steps); !reflect.DeepEqual(got, []string{"one:succeeded", "pure:succeeded", "two:succeeded", "three:succeeded"}) {
			t.Fatalf("steps %v", got)
		}
		if res.Steps[0].Attempts != 1 || res.Vars["a"] != 2 || res.Vars["c"] != 2 {
			t.Errorf("steps %+v vars %v: step one must not rerun, the pure step reruns, and run.attempt must be 2", res.Steps[0], res.Vars)
		}
	})

	t.Run("a run resumed during a retry wait waits only what is left and counts earlier tries", func(t *testing.T) {
		st := *cp.states[1]
		clock.mu.Lock()
		clock.sleeps = nil
		now := clock.now
		clock.mu.Unlock()
		st.WaitUntil = now.Add(4 * time.Second)
		res := e.Resume(context.Background(), invocation(s, nil), &st)
		if got := clock.Sleeps(); !reflect.DeepEqual(got, []time.Duration{4 * time.Second}) {
			t.Errorf("waits %v, want the 4s left", got)
		}
		if res.Steps[2].Attempts != 2 || res.Vars["b"] != 2 {
			t.Errorf("attempts %d, vars %v", res.Steps[2].Attempts, res.Vars)
		}
		if res.Steps[3].Attempts != 1 {
			t.Errorf("the step after the resumed one counts %d tries, want 1: earlier tries belong to the resumed step only", res.Steps[3].Attempts)
		}
	})

	t.Run("a checkpoint of another saga version is refused", func(t *testing.T) {
		st := *cp.states[0]
		st.SagaVersion = "000000000000"
		res := e.Resume(context.Background(), invocation(s, nil), &st)
		if res.Status != StatusFailed || !strings.Contains(res.Error, "changed since the run was checkpointed") {
			t.Errorf("status %q error %q", res.Status, res.Error)
		}
	})

	t.Run("a failing checkpoint does not stop the run", func(t *testing.T) {
		bad := &recordingCheckpointer{err: errors.New("disk full")}
		e, _, _ := testEngine(t, func(o *EngineOptions) { o.Checkpointer = bad })
		if res := e.Run(context.Background(), invocation(s, nil)); res.Status != StatusSucceeded {
			t.Errorf("status %q %s", res.Status, res.Error)
		}
	})
}

func TestRecordedValuesAreCut(t *testing.T) {
	s := mustParse(t, "big", "name: big\nsteps:\n  - {name: s, set: {v: '${ repeat(\"é\", 100) }'}}\n  - {name: r, respond: {body: '${ vars.v }'}}\n")
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.MaxOutputBytes = 51 })
	res := e.Run(context.Background(), invocation(s, nil))
	in, _ := res.Steps[0].Input.(string)
	if !strings.HasPrefix(in, `{"v":"é`) || !strings.Contains(in, "truncated") || len(in) > 100 {
		t.Errorf("recorded input %q", in)
	}
	if body, _ := res.Answer.Body.(string); len(body) != 200 {
		t.Errorf("the answer itself must not be cut: %d bytes", len(body))
	}
}

func TestAnExpressionOverItsMemoryBudgetFailsTheStep(t *testing.T) {
	s := mustParse(t, "m", "name: m\nsteps:\n  - {name: hog, set: {v: '${ len(map(1..2000000, # * 2)) }'}}\n")
	e, _, _ := testEngine(t)
	res := e.Run(context.Background(), invocation(s, nil))
	if res.Status != StatusFailed || !strings.Contains(res.Error, "memory budget exceeded") {
		t.Errorf("%s: %s", res.Status, res.Error)
	}
}

func TestOneEngineRunsManySagasAtOnce(t *testing.T) {
	s := mustParse(t, "par", `
name: par
steps:
  - name: a
    set: {n: "${ body.n }", tags: [x, "${ body.n }"]}
  - name: put
    kv: {op: put, key: "k${ body.n }", value: "${ vars.tags }"}
  - name: get
    kv: {op: get, key: "k${ body.n }"}
  - name: answer
    respond: {body: {n: "${ vars.n }", got: "${ steps.get.output }", const: {a: [1, 2]}}}
`)
	e, _, _ := testEngine(t)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := e.Run(context.Background(), invocation(s, map[string]any{"n": i}))
			body, _ := res.Answer.Body.(map[string]any)
			if res.Status != StatusSucceeded || body["n"] != float64(i) || toJSON(body["got"]) != fmt.Sprintf(`["x",%d]`, i) {
				t.Errorf("run %d: %s %s %v", i, res.Status, res.Error, body)
			}
		}()
	}
	wg.Wait()
}

func TestPureSagas(t *testing.T) {
	for _, tc := range []struct {
		name, steps string
		pure        bool
	}{
		{"set, log, respond", "  - {name: a, set: {x: 1}}\n  - {name: l, log: {message: hi}}\n  - {name: r, respond: {status: 200}}\n", true},
		{"fail", "  - {name: f, fail: {message: no}}\n", true},
		{"http", "  - {name: h, http: {url: \"https://example.com\"}}\n", false},
		{"kv get", "  - {name: k, kv: {op: get, key: a}}\n", false},
		{"compensate with http", "  - {name: a, set: {x: 1}, compensate: {http: {url: \"https://example.com\"}}}\n", false},
		{"retry", "  - {name: f, fail: {message: no}, retry: {attempts: 3, backoff: 1s}}\n", false},
	} {
		s := mustParse(t, "p", "name: p\nsteps:\n"+tc.steps)
		if got := s.Pure(); got != tc.pure {
			t.Errorf("%s: Pure() = %v, want %v", tc.name, got, tc.pure)
		}
	}
	withOnFailure := mustParse(t, "p", "name: p\nsteps:\n  - {name: a, set: {x: 1}}\non_failure: {http: {url: \"https://example.com\"}}\n")
	if withOnFailure.Pure() {
		t.Error("an on_failure http action is an effect")
	}
}

// A value that is exactly one expression keeps its type; the objects expressions see
// (request, endpoint, run, partner, error) come out under the names expressions use, in
// an answer and in anything recorded, so a checkpointed copy reads the same after a resume.
func TestWholeContextObjectsKeepTheirExpressionNames(t *testing.T) {
	s := mustParse(t, "whole", `
name: whole
steps:
  - name: keep
    set: {ep: "${ endpoint }", req: "${ request }", run: "${ run }", partner: "${ partner }"}
  - name: answer
    respond: {status: 200, body: {ep: "${ vars.ep }", req: "${ vars.req }", run: "${ vars.run }", partner: "${ vars.partner }"}}
`)
	e, _, _ := testEngine(t)
	res := e.Run(context.Background(), invocation(s, map[string]any{"a": 1}))
	if res.Status != StatusSucceeded || res.Answer == nil {
		t.Fatalf("status %q error %q", res.Status, res.Error)
	}
	got := string(res.Answer.BodyJSON)
	for _, want := range []string{`"ep":{"name":"encompass"}`, `"method":"POST"`, `"path":"/pushback/acme/encompass"`,
		`"remote_ip":"192.0.2.1"`, `"headers":{"content-type":"application/json"}`, `"id":"run-1"`, `"attempt":1`,
		`"received_at":"2026-03-04T05:06:07Z"`, `"partner":{"id":"acme","name":"Acme Lending"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("answer %s lacks %s", got, want)
		}
	}
	for _, goName := range []string{`"Name"`, `"Method"`, `"RemoteIP"`, `"ID"`, `"ReceivedAt"`} {
		if strings.Contains(got, goName) {
			t.Errorf("answer %s has the Go field name %s", got, goName)
		}
	}
}

// A downstream's answer quoted in a failed step's error stays in the run record and out of
// the info-level log: the log has bodies only at debug level.
func TestTheInfoLogLeavesOutADownstreamsAnswer(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"detail":"downstream-private-detail"}`, http.StatusBadRequest)
	}))
	defer down.Close()
	core, logs := observer.New(zapcore.InfoLevel)
	s := mustParse(t, "h", "name: h\nsteps:\n  - {name: call, http: {url: \""+down.URL+"/x\"}}\n")
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.Logger = zap.New(core) })
	res := e.Run(context.Background(), invocation(s, map[string]any{}))
	if res.Status != StatusFailed || !strings.Contains(res.Error, "unexpected status 400: {\"detail\":\"downstream-private-detail\"}") {
		t.Fatalf("status %q error %q: want the answer in the run's error", res.Status, res.Error)
	}
	failed := logs.FilterMessage("saga run failed").All()
	if len(failed) != 1 {
		t.Fatalf("log entries %v", logs.All())
	}
	logged, _ := failed[0].ContextMap()["error"].(string)
	if !strings.Contains(logged, "call: GET "+down.URL+"/x: unexpected status 400") || strings.Contains(logged, "downstream-private") {
		t.Errorf("logged error %q: want the step, URL and status without the answer", logged)
	}
	for _, entry := range logs.All() {
		if strings.Contains(fmt.Sprint(entry.ContextMap()), "downstream-private") {
			t.Errorf("an info entry carries the answer: %v", entry)
		}
	}
}
