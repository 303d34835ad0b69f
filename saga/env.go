package saga

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/google/uuid"
)

// Env is what saga expressions see; the expr tags are the names. Its shape is the contract of
// DESIGN §6.
type Env struct {
	// Ctx is the evaluation in progress (an *evalCtx): the run's secrets for secret(), and
	// the budgets and deadline the rewritten expressions spend through Tick, Hold and Guard
	// (budget.go). expr passes per-run state to functions compiled once at load only through
	// the environment; saga authors cannot name it (Parse rejects `ctx`).
	Ctx      context.Context      `expr:"ctx"`
	Request  RequestEnv           `expr:"request"`
	Body     any                  `expr:"body"`
	Raw      string               `expr:"raw"`
	Partner  Ref                  `expr:"partner"`
	Site     *Ref                 `expr:"site"` // nil for partner-scoped endpoints
	Endpoint EndpointEnv          `expr:"endpoint"`
	Settings map[string]any       `expr:"settings"`
	Vars     map[string]any       `expr:"vars"`
	Steps    map[string]StepState `expr:"steps"`
	Run      RunEnv               `expr:"run"`
	Error    *ErrorEnv            `expr:"error"` // set in compensate and on_failure only
	// Tick, Hold and Guard are what the budget patch calls to charge loops and price
	// operations (budget.go), bound to Ctx; authors cannot name them.
	Tick  func(int) bool      `expr:"$tick"`
	Hold  func(any) bool      `expr:"$hold"`
	Guard func(any, any) bool `expr:"$guard"`
}

// RequestEnv is `request` in expressions. Its JSON names are its expression names, so a
// saga that keeps or answers the whole object (`${ request }`) shows the same names, and
// a checkpointed copy reads the same after a resume. The same goes for the types below.
type RequestEnv struct {
	Method   string            `expr:"method" json:"method"`
	Path     string            `expr:"path" json:"path"`
	Headers  map[string]string `expr:"headers" json:"headers"` // lower-case names; repeated headers joined with ", "
	Query    map[string]string `expr:"query" json:"query"`     // first value of each parameter
	RemoteIP string            `expr:"remote_ip" json:"remote_ip"`
}

// EndpointEnv is `endpoint` in expressions.
type EndpointEnv struct {
	Name string `expr:"name" json:"name"`
}

// RunEnv is `run` in expressions.
type RunEnv struct {
	ID         string    `expr:"id" json:"id"`
	Attempt    int       `expr:"attempt" json:"attempt"` // 1, then 2 when a crashed run resumes, and so on
	ReceivedAt time.Time `expr:"received_at" json:"received_at"`
}

// ErrorEnv is `error` in compensate and on_failure.
type ErrorEnv struct {
	Step    string `expr:"step" json:"step"`
	Message string `expr:"message" json:"message"`
}

// StepState is `steps.<name>`.
type StepState struct {
	Status   string `expr:"status" json:"status"`
	Output   any    `expr:"output" json:"output,omitempty"`
	Attempts int    `expr:"attempts" json:"attempts"`
	Error    string `expr:"error" json:"error,omitempty"`
}

// newEnv builds the environment for one run from the invocation.
func newEnv(inv *Invocation, rs *runState) *Env {
	req := inv.Request
	headers := make(map[string]string, len(req.Headers))
	for k, vs := range req.Headers {
		k = lowerHeaderName(k)
		if prev, ok := headers[k]; ok {
			// http.Header keys are canonical, but a hand-built one may hold two spellings.
			vs = append([]string{prev}, vs...)
		}
		headers[k] = strings.Join(vs, ", ")
	}
	query := make(map[string]string, len(req.Query))
	for k, vs := range req.Query {
		if len(vs) > 0 {
			query[k] = vs[0]
		}
	}
	settings := inv.Settings
	if settings == nil {
		settings = map[string]any{}
	}
	ec := newEvalCtx(rs)
	return &Env{
		Ctx:  ec,
		Tick: ec.tick, Hold: ec.hold, Guard: ec.guard,
		Request: RequestEnv{
			Method: req.Method, Path: req.Path, Headers: headers, Query: query, RemoteIP: req.RemoteIP,
		},
		Body:     req.Body,
		Raw:      string(req.Raw),
		Partner:  inv.Partner,
		Site:     inv.Site,
		Endpoint: EndpointEnv{Name: inv.Endpoint},
		Settings: settings,
		Vars:     map[string]any{},
		Steps:    map[string]StepState{},
		Run:      RunEnv{ID: inv.RunID, Attempt: 1, ReceivedAt: req.ReceivedAt},
	}
}

// commonHeaders are the lower-case names of headers most requests carry, so that
// lowerHeaderName finds them without allocating: newEnv lower-cases every header of every
// run. Only read.
var commonHeaders = func() map[string]string {
	names := []string{"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
		"connection", "content-encoding", "content-length", "content-type", "cookie", "date", "expect",
		"forwarded", "host", "origin", "referer", "traceparent", "tracestate", "user-agent", "via",
		"x-amz-content-sha256", "x-amz-date", "x-amz-security-token", "x-api-key", "x-correlation-id",
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "x-request-id",
		"x-hub-signature", "x-hub-signature-256", "x-signature", "x-timestamp",
		"webhook-id", "webhook-signature", "webhook-timestamp", "elli-signature"}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}()

// lowerHeaderName is strings.ToLower(name), without an allocation for a common header.
func lowerHeaderName(name string) string {
	var buf [32]byte
	if len(name) > len(buf) {
		return strings.ToLower(name)
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	if s, ok := commonHeaders[string(b)]; ok { // string(b) in an index allocates nothing
		return s
	}
	return strings.ToLower(name) // not ASCII-only, or not common: as before
}

// program is one compiled expression.
type program struct {
	src  string
	prog *vm.Program
	refs []string // step names it reads through steps.<name>
	// callsSecret: the expression calls secret(), so its value is a credential wherever it
	// goes (a header sent on, a recorded input) whatever encoding wraps it.
	callsSecret bool
}

// exprScope is what an expression may refer to at its place in the file.
type exprScope struct {
	steps      map[string]bool // steps usable as steps.<name>: those earlier in the list
	all        map[string]bool // every step of the saga, for a clearer message
	allowError bool            // inside compensate or on_failure
}

// exprIssue is one problem found in an expression, positioned inside it (1-based).
type exprIssue struct {
	msg          string
	line, column int
}

const maxExprNodes = 10000

// exprOptions are the compile options shared by every expression. Built per call: expr
// options mutate a config, and the budget patch numbers the variables of one expression.
func exprOptions(asBool bool) []expr.Option {
	opts := []expr.Option{
		expr.Env(Env{}),
		expr.Function("secret", fnSecret, new(func(context.Context, string) string)),
		expr.Function("uuid", fnUUID, new(func() string)),
		expr.Function("hmac_sha256", fnHMAC, new(func(string, string) string)),
		expr.Function(fnURLPath, urlPathFunc, new(func(any) string)),
		expr.Function(fnURLQuery, urlQueryFunc, new(func(any) string)),
		// Prices loops and operations before they run (budget.go).
		expr.Patch(&budgetPatch{}),
		expr.WithContext("ctx"),
		expr.MaxNodes(maxExprNodes),
	}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	return opts
}

// compileExpr compiles src and checks the references expr's type checker cannot: steps
// that do not exist earlier, `error` outside compensate/on_failure, the internal `ctx`.
func compileExpr(src string, sc exprScope, asBool bool) (*program, []exprIssue) {
	var issues []exprIssue
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, []exprIssue{issueFrom(err, src)}
	}
	w := refWalker{src: src, scope: sc}
	ast.Walk(&tree.Node, &w)
	issues = append(issues, w.issues...)

	p, err := expr.Compile(src, exprOptions(asBool)...)
	if err != nil {
		iss := issueFrom(err, src)
		if asBool && strings.HasPrefix(iss.msg, "expected bool") {
			iss.msg = "must be true or false: " + iss.msg
		}
		// The walker already explained a bad `ctx`; expr would add "too many arguments" noise
		// or nothing useful, so keep one message per place.
		if !slices.ContainsFunc(issues, func(x exprIssue) bool { return x.line == iss.line && x.column == iss.column }) {
			issues = append(issues, iss)
		}
	}
	if len(issues) > 0 {
		return nil, issues
	}
	return &program{src: src, prog: p, refs: w.refs, callsSecret: w.callsSecret}, nil
}

func issueFrom(err error, src string) exprIssue {
	var fe *file.Error
	if errors.As(err, &fe) {
		b := *fe
		b.Bind(file.NewSource(src))
		return exprIssue{msg: b.Message, line: b.Line, column: b.Column + 1}
	}
	return exprIssue{msg: err.Error(), line: 1, column: 1}
}

// refWalker finds steps.<name>, error and ctx in an expression's syntax tree.
type refWalker struct {
	src         string
	scope       exprScope
	refs        []string
	issues      []exprIssue
	callsSecret bool
}

func (w *refWalker) issue(n ast.Node, format string, args ...any) {
	fe := &file.Error{Location: n.Location(), Message: fmt.Sprintf(format, args...)}
	fe.Bind(file.NewSource(w.src))
	w.issues = append(w.issues, exprIssue{msg: fe.Message, line: fe.Line, column: fe.Column + 1})
}

func (w *refWalker) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok || id.Value != "steps" {
			return
		}
		prop, ok := n.Property.(*ast.StringNode)
		if !ok {
			w.issue(n, "steps must be followed by a step name, as in steps.fetch_loan")
			return
		}
		if !w.scope.steps[prop.Value] {
			if w.scope.all[prop.Value] {
				w.issue(n.Property, "steps.%s: step %q does not run before this point: an expression can read only earlier steps", prop.Value, prop.Value)
			} else {
				w.issue(n.Property, "steps.%s: there is no step %q%s", prop.Value, prop.Value, w.known())
			}
			return
		}
		if !slices.Contains(w.refs, prop.Value) {
			w.refs = append(w.refs, prop.Value)
		}
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "secret" {
			w.callsSecret = true
		}
	case *ast.VariableDeclaratorNode:
		if strings.HasPrefix(n.Name, "$") {
			w.issue(n, "%s: names starting with $ are reserved", n.Name)
		}
	case *ast.IdentifierNode:
		switch {
		case n.Value == "ctx", strings.HasPrefix(n.Value, "$"):
			// ctx carries the run's secrets and budgets; $env is expr's handle on the whole
			// environment, ctx included; the budget patch's functions and variables start
			// with $. None is for saga authors.
			w.issue(n, "unknown name %s", n.Value)
		case n.Value == "error":
			if !w.scope.allowError {
				w.issue(n, "error is only set in compensate and on_failure")
			}
		}
	}
}

func (w *refWalker) known() string {
	if len(w.scope.steps) == 0 {
		return " (and no step before this point)"
	}
	names := slices.Sorted(maps.Keys(w.scope.steps))
	return " (steps before this point: " + strings.Join(names, ", ") + ")"
}

func fnSecret(params ...any) (any, error) {
	c, _ := params[0].(*evalCtx)
	name, _ := params[1].(string)
	if c == nil || c.rs == nil {
		return nil, errors.New("secret() is not available here")
	}
	return c.rs.reveal(name)
}

func fnUUID(...any) (any, error) {
	return uuid.NewString(), nil
}

func fnHMAC(params ...any) (any, error) {
	key, _ := params[0].(string)
	text, _ := params[1].(string)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(text))
	return hex.EncodeToString(m.Sum(nil)), nil
}

// evaluator runs programs against one environment with one VM. Not safe for concurrent use:
// a run evaluates on one goroutine.
type evaluator struct {
	env *Env
	ec  *evalCtx // env.Ctx
	vm  vm.VM
}

func newEvaluator(env *Env, lim exprLimits) *evaluator {
	ec, ok := env.Ctx.(*evalCtx)
	if !ok { // an Env not made by newEnv
		ec = newEvalCtx(nil)
		env.Ctx, env.Tick, env.Hold, env.Guard = ec, ec.tick, ec.hold, ec.guard
	}
	ec.lim = lim
	ev := &evaluator{env: env, ec: ec}
	ev.vm.MemoryBudget = lim.items
	return ev
}

// bind makes evaluations stop once ctx ends, and returns the context bound before, for the
// caller to bind again when it is done. expr's VM takes no context, so the one the rewritten
// expressions check is held in Env.Ctx for the span of one try of one step.
func (ev *evaluator) bind(ctx context.Context) (prev context.Context) {
	prev = ev.ec.Context
	ev.ec.Context, ev.ec.done = ctx, ctx.Done()
	return prev
}

// evalError is a failed evaluation. Its text names the expression and the place in it; it
// wraps what stopped it, so that a deadline is still recognised as one.
type evalError struct {
	msg string
	err error
}

func (e *evalError) Error() string { return e.msg }
func (e *evalError) Unwrap() error { return e.err }

// exprMemoryBudget is the message of expr's own MemoryBudget check.
const exprMemoryBudget = "memory budget exceeded"

func (ev *evaluator) eval(p *program) (any, error) {
	ec := ev.ec
	ec.steps, ec.bytes = ec.lim.steps, ec.lim.bytes
	clear(ec.held) // an evaluation that failed between a $hold and its $guard
	ec.held = ec.held[:0]
	src := strings.TrimSpace(p.src)
	out, err := ev.vm.Run(p.prog, ev.env)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			msg := fe.Message
			if msg == exprMemoryBudget {
				msg = fmt.Sprintf("%s: an evaluation may make %d list items and map entries (ranges, map, filter, repeat's characters, ...)", msg, ec.lim.items)
			}
			// The snippet repeats the source over several lines; one line reads better in a
			// step record.
			return nil, &evalError{msg: fmt.Sprintf("%s: %s (expression column %d)", src, msg, fe.Column+1), err: fe.Unwrap()}
		}
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if err := ec.checkResult(out); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return out, nil
}

func (ev *evaluator) evalBool(p *program) (bool, error) {
	out, err := ev.eval(p)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok && out != nil {
		return false, fmt.Errorf("%s: expected a boolean, got %T", p.src, out)
	}
	return b, nil
}
