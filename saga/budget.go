package saga

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// Expressions are bounded by rewriting them.
//
// A saga's expressions see what the sender sent, and some are written by whoever may change
// the config. expr's VM offers a MemoryBudget, but it counts only ranges, lists and maps, and
// builtins report their size after they have allocated it (repeat(repeat("a",100000),1000000)
// asks the Go runtime for 100 GB first); it has no notion of time and takes no context.
//
// So every expression is rewritten when it is compiled (budgetPatch, an expr.Patch visitor)
// to pay before it works:
//
//   - The body of every predicate (all, map, filter, reduce, ...) starts with a call of
//     $tick weighted by the body's size. Predicates are the only loops the language has, so
//     their iterations bound what the VM does; the tick is also where the step's or saga's
//     deadline is seen.
//   - Every builtin, function and operator whose work or result grows with its operands
//     (repeat, join, toJSON, string +, ==, in, contains, matches, ...) first has its operands
//     bound to variables and handed to $guard (through $hold, for all but the last), which
//     prices the operation — bytes it will build, items or text it will go through — and
//     refuses before it runs. Operations with a literal operand that bounds their cost
//     (x == "a") are left alone, so ordinary conditions run as before.
//
// The alternatives were worse: expr.Operator applies only where both operand types are known
// at compile time, and body fields are not; replacing the builtins means re-implementing 40 of
// them; a timer cannot stop a goroutine, so a VM without checks would run on after the run's
// deadline and after the sender's 504.
//
// The rewritten program reaches the evaluation in progress through funcs in Env bound to it
// (Env.Tick, Env.Hold, Env.Guard), the way per-run state reaches code compiled once at load.

// Names the rewritten programs call (Env.Tick, Env.Hold, Env.Guard) and bind ($1, $2, ...).
// expr reads $ as the start of a name, so compileExpr refuses every name starting with $ in
// what authors write.
const (
	tickFn  = "$tick"
	holdFn  = "$hold"
	guardFn = "$guard"
)

// Default limits of one evaluation.
const (
	// defaultExprSteps: a step is one node of a loop body per iteration, or one item or 64
	// bytes an operation goes through: some tens of nanoseconds, so 1e6 steps is well under a
	// second of CPU.
	defaultExprSteps = 1_000_000
	// defaultExprBytes bounds the text and lists one evaluation builds: a toJSON of a
	// megabyte body fits several times over.
	defaultExprBytes = 16 << 20
	// defaultExprItems is expr's own MemoryBudget (range sizes, list and map entries).
	defaultExprItems = 1_000_000
)

// exprLimits bound one evaluation of one expression.
type exprLimits struct {
	steps int64
	bytes int64
	items uint
}

func defaultExprLimits() exprLimits {
	return exprLimits{steps: defaultExprSteps, bytes: defaultExprBytes, items: defaultExprItems}
}

// evalCtx is Env.Ctx: the evaluation in progress as the functions compiled at load see it.
type evalCtx struct {
	// Context is the one the evaluation runs for (a step's try, a plan): when it ends,
	// the evaluation stops at its next tick or guard. Background between tries.
	context.Context
	done <-chan struct{}
	rs   *runState

	lim          exprLimits
	steps, bytes int64 // left in the current evaluation
	held         []any // operands $hold keeps for the next $guard
	heldBuf      [4]any
}

func newEvalCtx(rs *runState) *evalCtx {
	c := &evalCtx{Context: context.Background(), rs: rs, lim: defaultExprLimits()}
	c.held = c.heldBuf[:0]
	return c
}

// limitError is an evaluation stopped by a limit.
type limitError struct {
	msg string
	err error // the context's cause, for a deadline
}

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return e.err }

// spend takes steps and bytes from what the evaluation has left, or says which limit ran
// out. what names the operation for the message.
func (c *evalCtx) spend(what string, steps, bytes int64) error {
	select {
	case <-c.done:
		cause := context.Cause(c.Context)
		return &limitError{msg: "stopped: " + cause.Error(), err: cause}
	default:
	}
	if bytes > c.bytes {
		left := max(c.bytes, 0)
		if bytes == math.MaxInt64 {
			return &limitError{msg: fmt.Sprintf("memory budget exceeded: %s needs more than the %d bytes left of the %d an evaluation may build",
				what, left, c.lim.bytes)}
		}
		return &limitError{msg: fmt.Sprintf("memory budget exceeded: %s needs %d bytes, more than the %d left of the %d an evaluation may build",
			what, bytes, left, c.lim.bytes)}
	}
	if steps > c.steps {
		return &limitError{msg: fmt.Sprintf("operation budget exceeded at %s: an evaluation may take %d steps "+
			"(each loop iteration costs its body's size, an operation one step per item or 64 bytes it reads); loop over less data",
			what, c.lim.steps)}
	}
	c.bytes -= bytes
	c.steps -= steps
	return nil
}

// tick is Env.Tick, $tick(weight), called at the start of every predicate body. It is a
// typed func field rather than an expr.Function so that the VM calls it directly
// (OpCallTyped), without the argument slice it allocates for functions once a loop has used
// up its estimate. It stops the evaluation by panicking, which the VM turns into its error.
func (c *evalCtx) tick(weight int) bool {
	if err := c.spend("a loop", int64(weight), 0); err != nil {
		panic(err)
	}
	return true
}

// hold is Env.Hold, $hold(operand): it keeps an operand for the $guard that follows. With
// $guard taking the last operand it prices operations of any arity through calls of typed
// funcs, which the VM makes without allocating (see tick).
func (c *evalCtx) hold(operand any) bool {
	c.held = append(c.held, operand)
	return true
}

// guard is Env.Guard, $guard(name, last operand), called before each priced operation.
func (c *evalCtx) guard(name, last any) bool {
	args := append(c.held, last)
	what, _ := name.(string)
	steps, bytes := c.price(what, args)
	clear(args) // keep nothing alive past the operation
	c.held = args[:0]
	if err := c.spend(what, steps, bytes); err != nil {
		panic(err)
	}
	return true
}

// price is what running the operation name on args will cost. It never fails: operands of
// the wrong type cost little here and fail in the operation itself. Walks of nested values
// stop once they pass what is left, so pricing costs no more than the budget it guards.
func (c *evalCtx) price(name string, args []any) (steps, bytes int64) {
	arg := func(i int) any {
		if i < len(args) {
			return args[i]
		}
		return nil
	}
	text := func(i int) int64 {
		s, _ := arg(i).(string)
		return int64(len(s))
	}
	// deep measures v for an operation that goes through it (items bound the walk), out for
	// one that writes it out (bytes bound it too).
	deep := func(v any) size {
		z := sizer{maxBytes: math.MaxInt64, maxItems: c.steps, escape: 1}
		return z.measure(v)
	}
	out := func(v any, json bool) size {
		z := sizer{maxBytes: c.bytes, maxItems: c.steps, escape: 1}
		if json {
			z.escape, z.indent = 6, true
		}
		return z.measure(v)
	}
	switch name {
	case "+":
		a, aok := arg(0).(string)
		b, bok := arg(1).(string)
		if aok && bok {
			bytes = int64(len(a)) + int64(len(b))
		}
		return scan(bytes), bytes
	case "==", "!=", "<", ">", "<=", ">=", "startsWith", "endsWith":
		// Comparing stops at the end of the smaller side.
		a, b := deep(arg(0)), deep(arg(1))
		if a.bytes > b.bytes {
			a = b
		}
		return addSat(a.items, scan(a.bytes)), 0
	case "in":
		switch reflect.ValueOf(arg(1)).Kind() {
		case reflect.Map, reflect.Struct, reflect.Pointer:
			return 1, 0 // a lookup
		}
		// Each item is compared with the needle: at most the list's own size in all.
		z := deep(arg(1))
		return addSat(z.items, scan(z.bytes)), 0
	case "contains", "indexOf", "lastIndexOf", "hasPrefix", "hasSuffix", "trimPrefix", "trimSuffix",
		"int", "float", "duration":
		return scan(text(0) + text(1)), 0
	case "trim":
		return scan(mulSat(text(0)+1, text(1)+1)), 0
	case "matches":
		// Go's regexp runs in time proportional to text times pattern.
		return scan(mulSat(text(0)+1, text(1)+1)) + text(1), 0
	case "repeat":
		n, _ := toInt64(arg(1))
		bytes = mulSat(text(0), max(n, 0))
		return scan(bytes), bytes
	case "replace":
		return priceReplace(args)
	case "split", "splitAfter":
		s, _ := arg(0).(string)
		sep, _ := arg(1).(string)
		var parts int64
		if sep == "" {
			parts = int64(utf8.RuneCountInString(s))
		} else {
			parts = int64(strings.Count(s, sep)) + 1
		}
		if n, ok := toInt64(arg(2)); ok && len(args) > 2 && n >= 0 {
			parts = min(parts, n)
		}
		return scan(int64(len(s))) + parts, 16 * parts
	case "join":
		glue, _ := arg(1).(string)
		var n, total int64
		switch l := arg(0).(type) {
		case []string:
			for _, s := range l {
				total += int64(len(s))
			}
			n = int64(len(l))
		case []any:
			for _, e := range l {
				s, _ := e.(string)
				total += int64(len(s))
			}
			n = int64(len(l))
		}
		bytes = total + mulSat(int64(len(glue)), n) + 16*n
		return n + scan(bytes), bytes
	case "upper", "lower":
		// A few runes grow by half when their case changes.
		bytes = text(0) + text(0)/2
		return scan(bytes), bytes
	case "toBase64":
		bytes = (text(0) + 2) / 3 * 4
		return scan(bytes), bytes
	case "fromBase64":
		return scan(text(0)), text(0)
	case "fromJSON":
		// Decoded values take several times the bytes of their text ("[[[[" is a list per
		// byte); decoding runs at some tens of MB/s.
		return text(0)/16 + 1, 8 * text(0)
	case "toJSON":
		z := out(arg(0), true)
		return addSat(z.items, scan(z.bytes)), z.bytes
	case "string":
		if s, ok := arg(0).(string); ok {
			return scan(int64(len(s))), 0
		}
		z := out(arg(0), false)
		return addSat(z.items, scan(z.bytes)), z.bytes
	case "timezone":
		// A time zone name is looked up on disk, every call.
		return 1000, 0
	case "date":
		if len(args) == 3 { // date(text, layout, time zone name)
			return 1000 + scan(text(0)), 0
		}
		return scan(text(0) + text(1)), 0
	case "keys", "values", "toPairs", "fromPairs", "reverse", "concat":
		var n int64
		for _, a := range args {
			n += shallowLen(a)
		}
		return n + 1, 16 * n
	case "count", "sum":
		return shallowLen(arg(0)) + 1, 0
	case "sort":
		n := shallowLen(arg(0))
		return mulSat(n, int64(bits.Len64(uint64(n)))+1), 16 * n
	case "uniq":
		// Each item is compared with every distinct item before it.
		n := shallowLen(arg(0))
		z := deep(arg(0))
		return mulSat(n, addSat(z.items, scan(z.bytes))), 16 * n
	case "max", "min", "mean":
		return deep(args).items, 0
	case "median", "flatten": // a list of every number, or of every item
		z := deep(args)
		return z.items, mulSat(16, z.items)
	case "hmac_sha256":
		return scan(text(0) + text(1)), 64
	}
	// A function or method not priced above: its work is taken to be proportional to its
	// operands, and what it builds (an escaped string, say) at most three times their text.
	z := out(args, false)
	return addSat(z.items, scan(z.bytes)), mulSat(3, z.bytes)
}

// priceReplace prices replace(s, old, new[, n]): the result's exact length, found by
// counting the matches.
func priceReplace(args []any) (steps, bytes int64) {
	if len(args) < 3 {
		return 1, 0
	}
	s, _ := args[0].(string)
	old, _ := args[1].(string)
	repl, _ := args[2].(string)
	var count int64
	if old == "" {
		count = int64(utf8.RuneCountInString(s)) + 1
	} else {
		count = int64(strings.Count(s, old))
	}
	if len(args) > 3 {
		if n, ok := toInt64(args[3]); ok && n >= 0 {
			count = min(count, n)
		}
	}
	bytes = int64(len(s)) + max(mulSat(count, int64(len(repl))-int64(len(old))), 0)
	return scan(int64(len(s))) + scan(bytes), bytes
}

// scan is the steps for going through n bytes.
func scan(n int64) int64 { return n/64 + 1 }

func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func mulSat(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case float64:
		if x >= math.MaxInt64 {
			return math.MaxInt64, true
		}
		return int64(x), true
	}
	return 0, false
}

// shallowLen is the number of items of a list or map, 0 for anything else.
func shallowLen(v any) int64 {
	switch x := v.(type) {
	case []any:
		return int64(len(x))
	case map[string]any:
		return int64(len(x))
	case nil, string, bool, int, float64:
		return 0
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return int64(rv.Len())
	}
	return 0
}

// size is how large a value is written out, and how many items it holds.
type size struct{ bytes, items int64 }

// sizer measures a value as JSON (or %v) would write it, without writing it, and gives up
// once either count passes its maximum: a list may hold one sublist many times, so a value
// that is small in memory can be vast written out, compared or flattened.
type sizer struct {
	size
	maxBytes, maxItems int64
	escape             int64 // bytes one byte of a string may become: 6 in JSON (\u00XX), 1 for %v
	indent             bool  // toJSON's two spaces a level, and a newline, per item
}

func (z *sizer) full() bool { return z.bytes > z.maxBytes || z.items > z.maxItems }

// measure is v's size, or the largest size there is if v is larger than the maximums.
func (z *sizer) measure(v any) size {
	if z.walk(v, 0); z.full() {
		return size{math.MaxInt64, math.MaxInt64}
	}
	return z.size
}

func (z *sizer) item(depth int64, bytes int64) {
	z.items++
	z.bytes += bytes + 1 // and a comma
	if z.indent {
		z.bytes += 2*depth + 1
	}
}

func (z *sizer) walk(v any, depth int64) {
	if z.full() {
		return
	}
	switch x := v.(type) {
	case nil:
		z.item(depth, 4)
	case string:
		z.item(depth, z.escape*int64(len(x))+2)
	case bool:
		z.item(depth, 5)
	case int, int64, float64, int32, float32, uint, uint64:
		z.item(depth, 24)
	case time.Time:
		z.item(depth, 40)
	case time.Duration:
		z.item(depth, 24)
	case []any:
		z.item(depth, 2)
		for _, e := range x {
			if z.walk(e, depth+1); z.full() {
				return
			}
		}
	case map[string]any:
		z.item(depth, 2)
		for k, e := range x {
			z.bytes += z.escape*int64(len(k)) + 4
			if z.walk(e, depth+1); z.full() {
				return
			}
		}
	case []string:
		z.item(depth, 2)
		for _, s := range x {
			if z.item(depth+1, z.escape*int64(len(s))+2); z.full() {
				return
			}
		}
	case []int:
		z.item(depth, 2)
		for range x {
			if z.item(depth+1, 24); z.full() {
				return
			}
		}
	case []float64:
		z.item(depth, 2)
		for range x {
			if z.item(depth+1, 24); z.full() {
				return
			}
		}
	default:
		z.walkReflect(reflect.ValueOf(v), depth)
	}
}

// walkReflect measures the kinds the cases of walk do not name: maps and lists of other
// types, structs such as steps.<name>, pointers.
func (z *sizer) walkReflect(rv reflect.Value, depth int64) {
	switch rv.Kind() {
	case reflect.Invalid:
		z.item(depth, 4)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			z.item(depth, 4)
			return
		}
		z.walk(rv.Elem().Interface(), depth)
	case reflect.String:
		z.item(depth, z.escape*int64(rv.Len())+2)
	case reflect.Slice, reflect.Array:
		z.item(depth, 2)
		for i := 0; i < rv.Len() && !z.full(); i++ {
			z.walk(rv.Index(i).Interface(), depth+1)
		}
	case reflect.Map:
		z.item(depth, 2)
		for it := rv.MapRange(); it.Next() && !z.full(); {
			z.walk(it.Key().Interface(), depth+1)
			z.walk(it.Value().Interface(), depth+1)
		}
	case reflect.Struct:
		z.item(depth, 2)
		t := rv.Type()
		for i := 0; i < rv.NumField() && !z.full(); i++ {
			if t.Field(i).IsExported() {
				z.bytes += int64(len(t.Field(i).Name)) + 4
				z.walk(rv.Field(i).Interface(), depth+1)
			}
		}
	default:
		z.item(depth, 24)
	}
}

// checkResult refuses a value too large to leave the expression: run history, plans and
// templates write values out, and a list that holds one sublist many times could be
// gigabytes written out though it is kilobytes in memory.
func (c *evalCtx) checkResult(v any) error {
	switch v.(type) {
	case nil, string, bool, int, float64:
		return nil
	}
	z := sizer{maxBytes: c.lim.bytes, maxItems: c.lim.bytes, escape: 6}
	if z.walk(v, 0); z.full() {
		return &limitError{msg: fmt.Sprintf("the value is too large: more than %d bytes written out, the memory budget of one evaluation", c.lim.bytes)}
	}
	return nil
}

// budgetPatch is the expr.Patch visitor that rewrites an expression as the comment at the
// top of this file says. One is made per compiled expression: vars numbers the variables it
// binds, which must be unique within the expression.
type budgetPatch struct{ vars int }

// constantCost says whether an operation's cost does not grow with its operands.
func constantCost(name string) bool {
	switch name {
	case "len", "type", "abs", "ceil", "floor", "round", "first", "last", "get", "take", "now",
		"bitand", "bitor", "bitxor", "bitnand", "bitshl", "bitshr", "bitushr", "bitnot",
		"secret", "uuid", tickFn, holdFn, guardFn:
		return true
	}
	return false
}

func (p *budgetPatch) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.BuiltinNode:
		if constantCost(n.Name) {
			return
		}
		if p.loop(node, n) {
			return
		}
		if (n.Name == "count" || n.Name == "sum") && len(n.Arguments) == 1 && isRange(n.Arguments[0]) {
			return // a fresh range: expr counted its items when it made it
		}
		p.guard(node, n.Name, pointers(n.Arguments)...)
	case *ast.CallNode:
		name := "a method"
		switch c := n.Callee.(type) {
		case *ast.IdentifierNode:
			name = c.Value
		case *ast.MemberNode:
			if s, ok := c.Property.(*ast.StringNode); ok {
				name = s.Value
			}
		}
		if constantCost(name) {
			return
		}
		p.guard(node, name, pointers(n.Arguments)...)
	case *ast.BinaryNode:
		l, r := isLiteral(n.Left), isLiteral(n.Right)
		switch n.Operator {
		case "+":
			if (l && r) || isKind(n.Left, isNumber) || isKind(n.Right, isNumber) {
				return
			}
		case "==", "!=", "<", ">", "<=", ">=", "startsWith", "endsWith":
			// A literal side bounds the comparison.
			if l || r || isKind(n.Left, isScalar) || isKind(n.Right, isScalar) {
				return
			}
		case "in":
			if isLiteralList(n.Right) {
				return
			}
		case "contains", "matches":
			if l && r {
				return
			}
		default:
			return
		}
		p.guard(node, n.Operator, &n.Left, &n.Right)
	}
}

// loop rewrites *node, n, if it is a loop (a builtin with a predicate) as
//
//	let $t1 = $tick; all(list, {$t1(weight); body})
//
// The tick is loaded once per loop and called from a variable in each iteration, which
// costs the VM less than a field of Env.
func (p *budgetPatch) loop(node *ast.Node, n *ast.BuiltinNode) bool {
	var tick string
	for _, a := range n.Arguments {
		pred, ok := a.(*ast.PredicateNode)
		if !ok {
			continue
		}
		if tick == "" {
			p.vars++
			tick = fmt.Sprintf("$t%d", p.vars)
		}
		var w nodeCounter
		ast.Walk(&pred.Node, &w)
		weight := &ast.IntegerNode{Value: max(w.n, 1)}
		seq := &ast.SequenceNode{Nodes: []ast.Node{call(pred.Location(), tick, weight), pred.Node}}
		at(pred.Location(), seq, weight)
		pred.Node = seq
	}
	if tick == "" {
		return false
	}
	let := &ast.VariableDeclaratorNode{Name: tick, Value: &ast.IdentifierNode{Value: tickFn}, Expr: n}
	at(n.Location(), let, let.Value)
	*node = let
	return true
}

// guard rewrites *node, an operation on operands, as
//
//	let $1 = operand1; let $2 = operand2; ($hold($1); $guard("name", $2); operation($1, $2))
//
// so the operands are evaluated once, priced, then used. Literal operands stay in place.
func (p *budgetPatch) guard(node *ast.Node, name string, operands ...*ast.Node) {
	loc := (*node).Location()
	var (
		lets []*ast.VariableDeclaratorNode
		args []ast.Node // what the guard is given for each operand
	)
	for _, op := range operands {
		if lit := copyLiteral(*op); lit != nil {
			at(loc, lit)
			args = append(args, lit)
			continue
		}
		p.vars++
		v := fmt.Sprintf("$%d", p.vars)
		let, use, arg := &ast.VariableDeclaratorNode{Name: v, Value: *op}, &ast.IdentifierNode{Value: v}, &ast.IdentifierNode{Value: v}
		at(loc, let, use, arg)
		lets = append(lets, let)
		*op = use
		args = append(args, arg)
	}
	var last ast.Node = &ast.NilNode{}
	if len(args) > 0 {
		last, args = args[len(args)-1], args[:len(args)-1]
	}
	var seq []ast.Node
	for _, a := range args {
		seq = append(seq, call(loc, holdFn, a))
	}
	what := &ast.StringNode{Value: name}
	at(loc, what, last)
	seq = append(seq, call(loc, guardFn, what, last), *node)
	var out ast.Node = &ast.SequenceNode{Nodes: seq}
	at(loc, out)
	for i := len(lets) - 1; i >= 0; i-- {
		lets[i].Expr = out
		out = lets[i]
	}
	*node = out
}

// call is a call of one of the budget's functions.
func call(loc file.Location, fn string, args ...ast.Node) ast.Node {
	c := &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: args}
	at(loc, c, c.Callee)
	return c
}

// at gives the nodes the location of the operation they were made for, so that an error
// raised in a guard points at that operation.
func at(loc file.Location, nodes ...ast.Node) {
	for _, n := range nodes {
		n.SetLocation(loc)
	}
}

func pointers(nodes []ast.Node) []*ast.Node {
	out := make([]*ast.Node, len(nodes))
	for i := range nodes {
		out[i] = &nodes[i]
	}
	return out
}

func isLiteral(n ast.Node) bool { return copyLiteral(n) != nil }

// copyLiteral is a fresh copy of a literal node, or nil for anything else.
func copyLiteral(n ast.Node) ast.Node {
	switch x := n.(type) {
	case *ast.StringNode:
		return &ast.StringNode{Value: x.Value}
	case *ast.IntegerNode:
		return &ast.IntegerNode{Value: x.Value}
	case *ast.FloatNode:
		return &ast.FloatNode{Value: x.Value}
	case *ast.BoolNode:
		return &ast.BoolNode{Value: x.Value}
	case *ast.NilNode:
		return &ast.NilNode{}
	case *ast.ConstantNode:
		return &ast.ConstantNode{Value: x.Value}
	}
	return nil
}

func isLiteralList(n ast.Node) bool {
	switch x := n.(type) {
	case *ast.ConstantNode:
		return true
	case *ast.ArrayNode:
		for _, e := range x.Nodes {
			if !isLiteral(e) {
				return false
			}
		}
		return true
	}
	return false
}

func isRange(n ast.Node) bool {
	b, ok := n.(*ast.BinaryNode)
	return ok && b.Operator == ".."
}

func isNumber(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func isScalar(k reflect.Kind) bool { return k == reflect.Bool || isNumber(k) }

// isKind says whether the type checker found n to be of a kind ok accepts.
func isKind(n ast.Node, ok func(reflect.Kind) bool) bool {
	t := n.Type()
	return t != nil && ok(t.Kind())
}

// nodeCounter counts the nodes of a tree: a loop body's weight.
type nodeCounter struct{ n int }

func (c *nodeCounter) Visit(*ast.Node) { c.n++ }
