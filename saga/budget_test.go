package saga

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// hostileSaga evaluates expr in a set step (or, with asWhen, as a step's condition) under a
// saga timeout, then answers.
func hostileSaga(t testing.TB, expr string, asWhen bool, timeout time.Duration) *Saga {
	t.Helper()
	step := fmt.Sprintf("    set: {x: '${ %s }'}", expr)
	if asWhen {
		step = fmt.Sprintf("    when: '%s'\n    set: {x: 1}", expr)
	}
	return mustParse(t, "hostile", fmt.Sprintf(`
name: hostile
timeout: %s
steps:
  - name: evaluate
%s
  - name: answer
    respond: {status: 200}
`, timeout, step))
}

// runWithin runs inv, failing the test if the run has not returned after limit: before
// expressions were bounded a hostile one ran for minutes, and the test must say so rather
// than hang. It reports the wall time and the bytes allocated meanwhile.
func runWithin(t *testing.T, e *Engine, inv *Invocation, limit time.Duration) (res *Result, took time.Duration, allocated uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan *Result, 1)
	start := time.Now()
	go func() { done <- e.Run(context.Background(), inv) }()
	select {
	case res = <-done:
	case <-time.After(limit):
		t.Fatalf("the run had not returned after %s", limit)
	}
	took = time.Since(start)
	runtime.ReadMemStats(&after)
	return res, took, after.TotalAlloc - before.TotalAlloc
}

// bigText is a megabyte of text for expressions to scan in loops.
var bigText = strings.Repeat("0123456789abcdef", 1<<16)

// TestHostileExpressionsFailTheirRun runs expressions that would take the process down, or
// hold a worker for minutes, through the engine. Each must fail its run with an error naming
// the limit it hit, well before the saga's deadline, having allocated a bounded amount.
func TestHostileExpressionsFailTheirRun(t *testing.T) {
	const (
		timeout  = 30 * time.Second
		maxAlloc = 96 << 20 // the byte budget (16 MiB) several times over, far from the GBs
	)
	// Well inside the deadline: a budget stopped the run, not the clock. The race detector
	// slows the VM's loops tenfold.
	maxTime := 2500 * time.Millisecond
	if raceEnabled {
		maxTime = 10 * time.Second
	}
	items := make([]any, 20000)
	for i := range items {
		items[i] = i
	}
	body := map[string]any{"text": bigText, "text2": bigText[:len(bigText)-1] + "!", "n": 1000000, "items": items, "json": `{"a":[1,2,3],"b":"` + strings.Repeat("x", 100000) + `"}`}
	cases := []struct {
		name, expr string
		asWhen     bool
		want       string
	}{
		{"a repeat of a repeat is refused before it allocates 100 GB",
			`repeat(repeat("a",100000),1000000)`, false, "memory budget"},
		{"a repeat whose count comes from the body is refused before it allocates",
			`repeat(body.text, body.n)`, false, "memory budget"},
		{"an accumulator that doubles a string stops at the memory budget",
			`reduce(1..27, #acc+#acc, "a")`, false, "memory budget"},
		{"string building in a loop stops at the memory budget",
			`reduce(1..100000, #acc + "0123456789", "")`, false, "memory budget"},
		{"three nested loops over 1500 items stop at the operation budget",
			`let r=1..1500; all(r,{all(r,{all(r,{true})})})`, true, "operation budget"},
		{"nested counts over ranges stop at the operation budget",
			`let r = 1..3000; count(r, {count(r, {# > 0}) == 3000}) == 3000`, true, "operation budget"},
		{"nested maps over big ranges stop at a budget",
			`len(map(1..3000, {map(1..3000, {#})})) > 0`, true, "budget"},
		{"a loop that sums a big list without a predicate stops at the operation budget",
			`let r = body.items; all(r, {sum(r) >= 0})`, true, "operation budget"},
		{"sorting a big list in a loop stops at a budget",
			`all(1..100000, {len(sort(body.items)) > 0})`, true, "budget"},
		{"uniq of a big list, quadratic, is refused",
			`len(uniq(body.items)) > 0`, true, "operation budget"},
		{"a range of a billion items is refused before it is made",
			`len(1..1000000000) > 0`, true, "memory budget"},
		{"scanning a megabyte in a loop stops at the operation budget",
			`all(1..100000, {not (body.text contains "zzz")})`, true, "operation budget"},
		{"comparing two megabyte strings in a loop stops at the operation budget",
			`all(1..100000, {body.text != body.text2})`, true, "operation budget"},
		{"hashing a megabyte in a loop stops at the operation budget",
			`all(1..100000, {hmac_sha256(body.text, raw) != ""})`, true, "operation budget"},
		{"a regexp over a megabyte in a loop stops at the operation budget",
			`all(1..100000, {not (body.text matches "z+y")})`, true, "operation budget"},
		{"toJSON of a value that repeats one list stops before it is written out",
			`let a = map(1..100, #); let b = map(1..100, a); let c = map(1..100, b); len(toJSON(map(1..100, c))) > 0`, true, "memory budget"},
		{"string() of a value that repeats one list stops before it is written out",
			`let a = map(1..100, #); let b = map(1..100, a); let c = map(1..100, b); len(string(map(1..100, c))) > 0`, true, "memory budget"},
		{"flatten of a value that repeats one list is refused",
			`let a = map(1..100, #); let b = map(1..100, a); let c = map(1..100, b); len(flatten(map(1..100, c))) > 0`, true, "budget"},
		{"comparing values that repeat one list stops at the operation budget",
			`let a = map(1..100, #); let b = map(1..100, a); let c = map(1..100, b); map(1..100, c) == map(1..100, c)`, true, "operation budget"},
		{"fromJSON of a large text in a loop stops at the memory budget",
			`len(map(1..10000, {fromJSON(body.json)})) > 0`, true, "memory budget"},
		{"a value that repeats one list cannot leave the expression",
			`let a = map(1..100, #); let b = map(1..100, a); let c = map(1..100, b); map(1..100, c)`, false, "too large"},
		{"replace that multiplies a megabyte is refused before it allocates",
			`replace(body.text, "0", body.text)`, false, "memory budget"},
		{"split of a megabyte into characters in a loop stops at a budget",
			`all(1..10000, {len(split(body.text, "")) > 0})`, true, "budget"},
		{"join of a big list in a loop stops at a budget",
			`let s = map(1..5000, body.text[0:1000]); all(1..10000, {len(join(s, ",")) > 0})`, true, "budget"},
		{"a thousand nested loops of two items, 2^1000 iterations, stop at the operation budget",
			"let r = 1..2; " + strings.Repeat("all(r, {", 1000) + "true" + strings.Repeat("})", 1000), true, "operation budget"},
		{"a chain of lets that doubles a string stops at the memory budget",
			doublingLets(60), false, "memory budget"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _, _ := testEngine(t)
			s := hostileSaga(t, c.expr, c.asWhen, timeout)
			res, took, allocated := runWithin(t, e, invocation(s, body), timeout+5*time.Second)
			if res.Status != StatusFailed || !strings.Contains(res.Error, c.want) {
				t.Fatalf("status %s, error %q: want failed naming %q", res.Status, res.Error, c.want)
			}
			if took > maxTime {
				t.Errorf("the run took %s: want under %s", took, maxTime)
			}
			if allocated > maxAlloc {
				t.Errorf("the run allocated %d MiB: want under %d MiB", allocated>>20, maxAlloc>>20)
			}
			t.Logf("%s in %s, %d MiB allocated", res.Error, took.Round(time.Millisecond), allocated>>20)
		})
	}
}

// doublingLets is `let a0 = "ab"; let a1 = a0 + a0; ... a<n-1>`: a string of 2^n bytes.
func doublingLets(n int) string {
	var b strings.Builder
	b.WriteString(`let a0 = "ab"; `)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "let a%d = a%d + a%d; ", i, i-1, i-1)
	}
	fmt.Fprintf(&b, "a%d", n-1)
	return b.String()
}

// cpuTime is the CPU time the process has used, all threads.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSagaTimeoutStopsAnExpression gives the CPU burner an operation budget it cannot
// exhaust, so only the saga's 1s deadline can stop it: the run must end at the deadline with
// an error that says so, and nothing may go on burning CPU afterwards.
func TestSagaTimeoutStopsAnExpression(t *testing.T) {
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.ExprSteps = 1 << 62 })
	s := hostileSaga(t, `let r=1..1500; all(r,{all(r,{all(r,{true})})})`, true, time.Second)
	res, took, _ := runWithin(t, e, invocation(s, map[string]any{}), 10*time.Second)
	if res.Status != StatusFailed || !strings.Contains(res.Error, "saga timed out after 1s") {
		t.Fatalf("status %s, error %q: want failed by the saga timeout", res.Status, res.Error)
	}
	// Unchecked, the expression runs 1500³ iterations: minutes. The upper bound leaves room
	// for -race on a loaded 2-core machine, where 1.5 s was exceeded with nothing wrong.
	if took < time.Second || took > 3*time.Second {
		t.Errorf("the run took %s: want the 1s deadline and little more", took)
	}
	before := cpuTime(t)
	time.Sleep(500 * time.Millisecond)
	if used := cpuTime(t) - before; used > 150*time.Millisecond {
		t.Errorf("the process used %s of CPU in the 500ms after the run ended: something is still evaluating", used)
	}
}

// TestStepTimeoutStopsAnExpression: a step's own timeout, shorter than the saga's, stops an
// expression in that step's arguments too.
func TestStepTimeoutStopsAnExpression(t *testing.T) {
	e, _, _ := testEngine(t, func(o *EngineOptions) { o.ExprSteps = 1 << 62 })
	s := mustParse(t, "steptimeout", `
name: steptimeout
timeout: 10s
steps:
  - name: burn
    timeout: 500ms
    set: {x: '${ let r=1..1500; all(r,{all(r,{all(r,{true})})}) }'}
`)
	res, took, _ := runWithin(t, e, invocation(s, map[string]any{}), 10*time.Second)
	if res.Status != StatusFailed || !strings.Contains(res.Error, "step timed out after 500ms") {
		t.Fatalf("status %s, error %q: want failed by the step timeout", res.Status, res.Error)
	}
	if took > 3*time.Second { // as above: unchecked, minutes
		t.Errorf("the run took %s: want the 500ms step timeout and little more", took)
	}
}

// TestPlanIsBounded: plan evaluates conditions and arguments too; a hostile saga must give a
// plan that names the limits, quickly, not a hung admin request or a dead process.
func TestPlanIsBounded(t *testing.T) {
	s := mustParse(t, "hostileplan", `
name: hostileplan
debounce: {key: '${ repeat(repeat("a",100000),1000000) }', wait: 1s}
steps:
  - name: burn
    when: 'let r=1..1500; all(r,{all(r,{all(r,{true})})})'
    set: {x: 1}
  - name: grow
    set: {x: '${ reduce(1..27, #acc+#acc, "a") }'}
  - name: crash
    set: {x: '${ repeat(repeat("a",100000),1000000) }'}
`)
	inv := invocation(s, map[string]any{})
	start := time.Now()
	done := make(chan *PlanResult, 1)
	go func() {
		pr, err := Plan(s, inv)
		if err != nil {
			t.Error(err)
		}
		done <- pr
	}()
	var pr *PlanResult
	select {
	case pr = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("plan had not returned after 30s")
	}
	// The budgets count operations, not time, so what bounds the plan is deterministic; the
	// wall-clock bound only catches a hang or an unbounded loop, with room for -race on a
	// loaded 2-core machine (3 s was exceeded there with nothing wrong).
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("plan took %s", took)
	}
	want := map[string]string{"burn": "operation budget"}
	for _, ps := range pr.Steps {
		if w, ok := want[ps.Name]; ok && !strings.Contains(ps.Error, w) {
			t.Errorf("step %s: error %q, want it to name %q", ps.Name, ps.Error, w)
		}
	}
	// burn's condition fails, so the run would fail there: make the others reachable.
	s2 := mustParse(t, "hostileplan2", strings.Replace(strings.Replace(string(s.Source), "name: hostileplan\n", "name: hostileplan2\n", 1), "    when: 'let r=1..1500; all(r,{all(r,{all(r,{true})})})'\n", "", 1))
	pr, err := Plan(s2, invocation(s2, map[string]any{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range pr.Steps[1:] {
		if !strings.Contains(ps.Error, "memory budget") {
			t.Errorf("step %s: error %q, want it to name the memory budget", ps.Name, ps.Error)
		}
	}
	if _, err := s.Debounce.Key.Render(inv); err == nil || !strings.Contains(err.Error(), "memory budget") {
		t.Errorf("debounce key: %v, want the memory budget", err)
	}
}

// TestBoundedExpressionsKeepTheirMeaning: the rewriting that prices operations must not
// change what ordinary expressions compute, nor which mistakes load reports.
func TestBoundedExpressionsKeepTheirMeaning(t *testing.T) {
	s := mustParse(t, "meaning", `
name: meaning
steps:
  - name: x
    set:
      concat: '${ "a-" + body.id + "-" + string(1 + 2) }'
      nums: '${ 1 + 2 * 3 }'
      rep: '${ repeat("ab", 3) }'
      parts: '${ split("a,b,c", ",") }'
      joined: '${ join(map(1..3, string(#)), "-") }'
      repl: '${ replace(body.id, "1", "one") }'
      sum: '${ sum(1..10) }'
      sump: '${ sum(body.items, # * 2) }'
      count: '${ count(1..10, # > 5) }'
      json: '${ toJSON({"a": [1, 2]}) }'
      back: '${ fromJSON("[1,2]")[1] }'
      up: '${ upper(body.id) }'
      in: '${ body.id in ["L1", "L2"] }'
      notin: '${ body.id not in body.ids }'
      matches: '${ body.id matches "^L[0-9]+$" }'
      dyn: '${ body.id matches body.pattern }'
      sorted: '${ sortBy(body.objs, .n, "desc")[0].n }'
      reduced: '${ reduce(body.items, #acc + #, 100) }'
      let: '${ let x = body.items[0]; x + 1 }'
      eq: '${ body.ids == body.ids2 }'
      less: '${ body.id < body.id2 }'
      year: '${ run.received_at.Format("2006") }'
      hmac: '${ hmac_sha256("k", body.id) }'
      first: '${ first(filter(body.items, # > 1)) }'
      chain: '${ body?.missing?.x ?? "none" }'
      uniq: '${ uniq([1, 1, 2]) }'
      maxed: '${ max(body.items) }'
      keys: '${ len(keys(body)) }'
`)
	e, _, _ := testEngine(t)
	inv := invocation(s, map[string]any{
		"id": "L1", "id2": "L2", "ids": []any{"L2"}, "ids2": []any{"L2"}, "pattern": "1$",
		"items": []any{1, 2, 3}, "objs": []any{map[string]any{"n": 1}, map[string]any{"n": 5}},
	})
	res := e.Run(context.Background(), inv)
	if res.Status != StatusSucceeded {
		t.Fatalf("%s: %s", res.Status, res.Error)
	}
	want := map[string]any{
		"concat": "a-L1-3", "nums": 7, "rep": "ababab", "parts": []string{"a", "b", "c"}, "joined": "1-2-3",
		"repl": "Lone", "sum": 55, "sump": 12.0, "count": 5, "json": "{\n  \"a\": [\n    1,\n    2\n  ]\n}",
		"back": 2.0, "up": "L1", "in": true, "notin": true, "matches": true, "dyn": true, "sorted": 5.0,
		"reduced": 106.0, "let": 2.0, "eq": true, "less": true, "year": "2026",
		"hmac": hmacHex("k", "L1"), "first": 2.0, "chain": "none", "uniq": []any{1, 2}, "maxed": 3.0, "keys": 7,
	}
	for k, w := range want {
		if got := res.Vars[k]; fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s = %#v, want %#v", k, got, w)
		}
	}

	bad := []struct{ name, expr, want string }{
		{"a string plus a number is still a load error", `"a" + 1`, "mismatched types string and int"},
		{"a reserved $ name is refused", `$guard(1)`, "unknown name $guard"},
		{"a variable may not take a reserved $ name", `let $1 = 2; $1`, "reserved"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, errs := Parse("sagas/bad.yaml", []byte(fmt.Sprintf("name: bad\nsteps:\n  - name: x\n    set: {x: '${ %s }'}\n", b.expr)))
			if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), b.want) {
				t.Fatalf("errors %v, want one naming %q", errs, b.want)
			}
		})
	}
}

func hmacHex(key, text string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(text))
	return hex.EncodeToString(m.Sum(nil))
}

// FuzzExprBudget checks the rewriting that bounds expressions against expr itself: whatever
// compiles without it must compile with it (unless the source names what authors may not:
// ctx, $ names, steps, error), and whatever evaluates within its budgets must give the
// value the unrewritten program gives.
func FuzzExprBudget(f *testing.F) {
	for _, s := range []string{
		`"a" + body.s`, `1 + 2 * 3`, `repeat(body.s, 3)`, `split("a,b", ",")`, `join(map(1..3, string(#)), "-")`,
		`replace(body.s, "x", "yy")`, `sum(1..10)`, `sum(body.items)`, `count(body.items, # > 1)`, `toJSON(body)`,
		`fromJSON(toJSON(body.m))`, `upper(body.s) + lower(body.s)`, `body.s in ["a", "b"]`, `2 in body.items`,
		`body.s matches "^[a-z]+$"`, `body.s contains "x"`, `sortBy(body.objs, .n)`, `reduce(body.items, #acc + #, 0)`,
		`let x = body.items[0]; x + 1`, `body.items == body.items`, `body.s < body.s`, `body?.missing?.x ?? "none"`,
		`uniq(body.items)`, `max(body.items)`, `keys(body.m)`, `flatten([[1], [2, [3]]])`, `hmac_sha256("k", body.s)`,
		`filter(body.objs, .n > 1) | map(.n)`, `groupBy(body.items, # % 2)`, `body.s[1:3]`, `trim(" x ")`,
		`all(body.items, {# > 0 && body.s != ""})`, `string(body.m)`, `toBase64(body.s)`, `date("2024-01-02").Year()`,
		`len(body.items) > 2 ? "many" : "few"`, `first(body.items) + last(body.items)`, `sort(body.items, "desc")`,
		`let r = 1..5; reduce(r, #acc + string(#), "")`, `map(body.items, {let y = # * 2; y + #index})`,
		`run?.received_at?.Format("2006")`, `body?.missing?.Format(upper(body.s)) ?? lower(body.s)`,
		`body?.m?.b | map(upper(#))`, `[body.s + "x", repeat(body.s, 2)] == [body.s + "x", body.s + body.s]`,
	} {
		f.Add(s)
	}
	body := map[string]any{
		"s": "hello", "items": []any{1.0, 2.0, 3.0}, "m": map[string]any{"a": 1.0, "b": []any{"x"}},
		"objs": []any{map[string]any{"n": 1.0}, map[string]any{"n": 5.0}},
	}
	plainOptions := []expr.Option{
		expr.Env(Env{}),
		expr.Function("secret", fnSecret, new(func(context.Context, string) string)),
		expr.Function("uuid", fnUUID, new(func() string)),
		expr.Function("hmac_sha256", fnHMAC, new(func(string, string) string)),
		expr.WithContext("ctx"),
		expr.MaxNodes(maxExprNodes),
	}
	lim := exprLimits{steps: 10000, bytes: 100000, items: 10000}
	f.Fuzz(func(t *testing.T, src string) {
		// uuid() and now() differ between calls; keys, values and toPairs follow map order.
		if len(src) > 300 || strings.Contains(src, "uuid") || strings.Contains(src, "now") ||
			strings.Contains(src, "keys") || strings.Contains(src, "values") || strings.Contains(src, "Pairs") {
			return
		}
		plain, err := expr.Compile(src, plainOptions...)
		if err != nil {
			return
		}
		p, issues := compileExpr(src, exprScope{}, false)
		if issues != nil {
			for _, is := range issues {
				if !strings.Contains(is.msg, "unknown name") && !strings.Contains(is.msg, "steps") &&
					!strings.Contains(is.msg, "error is only") && !strings.Contains(is.msg, "reserved") {
					// The rewrite type-checks operands expr leaves unchecked inside a call on
					// an unknown value (body.A(upper())): refusing those at load is fine as
					// long as they never had a value.
					machine := vm.VM{MemoryBudget: lim.items}
					if _, err := machine.Run(plain, newEnv(invocation(nil, body), newRunState(nil))); err == nil {
						t.Fatalf("%q compiles and runs as is but is refused rewritten: %v", src, issues)
					}
				}
			}
			return
		}
		inv := invocation(nil, body)
		ev := newEvaluator(newEnv(inv, newRunState(nil)), lim)
		got, err := ev.eval(p)
		if err != nil {
			return // over a budget, or an error expr gives too
		}
		machine := vm.VM{MemoryBudget: lim.items}
		want, err := machine.Run(plain, newEnv(inv, newRunState(nil)))
		if err != nil {
			t.Fatalf("%q: rewritten gives %v, as is fails: %v", src, got, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%q: rewritten gives %#v, as is %#v", src, got, want)
		}
	})
}

// BenchmarkEvalLoop is the rewriting's worst ordinary case: loops, where every iteration
// ticks, and a string built from a list, which is priced.
func BenchmarkEvalLoop(b *testing.B) {
	s := mustParse(b, "loop", `
name: loop
steps:
  - name: x
    set: {n: '${ count(body.items, # > 50) }', s: '${ join(map(body.items, string(#)), ",") }'}
`)
	items := make([]any, 100)
	for i := range items {
		items[i] = float64(i)
	}
	inv := invocation(s, map[string]any{"items": items})
	ev := newEvaluator(newEnv(inv, newRunState(nil)), defaultExprLimits())
	a := s.Steps[0].Action.set
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.render(ev); err != nil {
			b.Fatal(err)
		}
	}
}
