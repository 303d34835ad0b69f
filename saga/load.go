package saga

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/pushbackd/pushbackd/yamlconf"
)

var (
	stepNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	varNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Parse decodes and compiles one saga file; file is the path errors print. Every problem is
// returned at once, sorted by line, each naming the YAML position of the value and, for an
// expression, the column inside it. A file with problems gives a nil Saga: a half-compiled
// saga must never run.
func Parse(file string, src []byte) (*Saga, yamlconf.Errors) {
	n, errs := yamlconf.Parse(file, src)
	if errs != nil {
		return nil, errs
	}
	d := yamlconf.NewDecoder(file)
	if n == nil {
		d.ErrorAt(yamlconf.Pos{Line: 1, Column: 1}, "file is empty")
		return nil, d.Errors()
	}
	if yamlconf.IsNull(d.Resolve(n)) {
		// A document that is only a null or a bare tag ("!x") decodes as nothing without a
		// word from the decoder, which would leave a saga with no name and no steps.
		d.Errorf(n, "file holds no saga: expected a mapping with name and steps")
		return nil, d.Errors()
	}
	var raw rawSaga
	d.Decode(n, &raw)
	c := &compiler{d: d, all: map[string]bool{}}
	s := c.saga(file, &raw)
	if errs := d.Errors(); len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	sum := sha256.Sum256(src)
	s.Version = hex.EncodeToString(sum[:])[:12]
	s.Source = src
	return s, nil
}

type rawSaga struct {
	Name        posString     `yaml:"name,required"`
	Description string        `yaml:"description"`
	Timeout     time.Duration `yaml:"timeout"`
	Debounce    *rawDebounce  `yaml:"debounce"`
	SerializeBy rawNode       `yaml:"serialize_by"`
	Steps       rawNode       `yaml:"steps,required"`
	OnFailure   *rawAction    `yaml:"on_failure"`
}

type rawDebounce struct {
	Key   rawNode       `yaml:"key,required"`
	Wait  time.Duration `yaml:"wait,required"`
	Scope posString     `yaml:"scope"`
	Pos   yamlconf.Pos
}

// rawNode keeps a YAML node for the compile pass, which needs to know the steps before it.
type rawNode struct{ n ast.Node }

func (r *rawNode) UnmarshalYAMLNode(_ *yamlconf.Decoder, n ast.Node) { r.n = n }

// posString is a scalar that remembers where it was.
type posString struct {
	s   string
	pos yamlconf.Pos
	set bool
}

func (p *posString) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	p.pos = yamlconf.PosOf(n)
	s, ok := d.Scalar(n)
	if !ok {
		d.Errorf(n, "expected text, got a %s", nodeShape(d.Resolve(n)))
		return
	}
	p.s, p.set = s, true
}

// posInt is an integer that remembers where it was, for range checks after decoding.
type posInt struct {
	v   int
	pos yamlconf.Pos
	set bool
}

func (p *posInt) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	p.pos = yamlconf.PosOf(n)
	before := len(d.Errors())
	d.Decode(n, &p.v)
	p.set = len(d.Errors()) == before
}

type rawRetry struct {
	Attempts   posInt        `yaml:"attempts"`
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// rawAction is one action key and its value, decoded by kind in the compile pass.
type rawAction struct {
	kind string
	pos  yamlconf.Pos // of the action key
	node ast.Node
}

// UnmarshalYAMLNode reads a standalone action (compensate, on_failure): a mapping with
// exactly one action key.
func (a *rawAction) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	m := d.Mapping(n, "an action (one of "+strings.Join(actionKinds, ", ")+")")
	if m == nil {
		return
	}
	for _, mv := range m.Values {
		key := d.KeyName(mv)
		if !isActionKind(key) {
			d.Errorf(mv.Key, "unknown key %q: an action is one of %s", key, strings.Join(actionKinds, ", "))
			continue
		}
		if a.kind != "" {
			d.Errorf(mv.Key, "two actions, %s and %s: an action does exactly one thing", a.kind, key)
			continue
		}
		*a = rawAction{kind: key, pos: yamlconf.PosOf(mv.Key), node: mv.Value}
	}
	if a.kind == "" {
		d.Errorf(n, "no action: add one of %s", strings.Join(actionKinds, ", "))
	}
}

func isActionKind(k string) bool {
	for _, a := range actionKinds {
		if a == k {
			return true
		}
	}
	return false
}

// rawStep is one steps entry: step options plus exactly one action key, side by side.
type rawStep struct {
	pos             yamlconf.Pos
	name            posString
	when            posString
	timeout         time.Duration
	retry           *rawRetry
	continueOnError bool
	compensate      *rawAction
	action          rawAction
}

var stepKeys = []string{"name", "when", "timeout", "retry", "continue_on_error", "compensate"}

func (s *rawStep) UnmarshalYAMLNode(d *yamlconf.Decoder, n ast.Node) {
	m := d.Mapping(n, "a step")
	if m == nil {
		return
	}
	s.pos = yamlconf.PosOf(m)
	seen := map[string]bool{}
	for _, mv := range m.Values {
		key := d.KeyName(mv)
		if seen[key] {
			d.Errorf(mv.Key, "key %q appears twice", key)
			continue
		}
		seen[key] = true
		switch key {
		case "name":
			d.Decode(mv.Value, &s.name)
		case "when":
			d.Decode(mv.Value, &s.when)
		case "timeout":
			d.Decode(mv.Value, &s.timeout)
		case "retry":
			d.Decode(mv.Value, &s.retry)
		case "continue_on_error":
			d.Decode(mv.Value, &s.continueOnError)
		case "compensate":
			s.compensate = &rawAction{}
			d.Decode(mv.Value, s.compensate)
		default:
			if !isActionKind(key) {
				d.Errorf(mv.Key, "unknown key %q in a step (step keys: %s; actions: %s)", key,
					strings.Join(stepKeys, ", "), strings.Join(actionKinds, ", "))
				continue
			}
			if s.action.kind != "" {
				d.Errorf(mv.Key, "a step has exactly one action, this one has %s and %s", s.action.kind, key)
				continue
			}
			s.action = rawAction{kind: key, pos: yamlconf.PosOf(mv.Key), node: mv.Value}
		}
	}
	if !s.name.set && !seen["name"] {
		d.ErrorAt(s.pos, "missing required key \"name\"")
	}
	if s.action.kind == "" {
		d.ErrorAt(s.pos, "step %q has no action: add one of %s", s.name.s, strings.Join(actionKinds, ", "))
	}
}

// compiler turns the raw tree into a Saga, reporting through the decoder so decode and
// compile problems come back as one list.
type compiler struct {
	d   *yamlconf.Decoder
	all map[string]bool // every step name in the file, to tell "later" from "no such step"
}

func (c *compiler) errorf(pos yamlconf.Pos, format string, args ...any) {
	c.d.ErrorAt(pos, format, args...)
}

func (c *compiler) saga(file string, raw *rawSaga) *Saga {
	s := &Saga{
		Name:        raw.Name.s,
		Description: raw.Description,
		File:        file,
		Timeout:     raw.Timeout,
	}
	if raw.Name.set {
		base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml")
		if raw.Name.s != base {
			c.errorf(raw.Name.pos, "name %q does not match the file name %q: a saga is referenced by its file name", raw.Name.s, filepath.Base(file))
		}
	}
	none := exprScope{steps: map[string]bool{}, all: c.all}
	if raw.Debounce != nil {
		s.Debounce = &Debounce{Wait: raw.Debounce.Wait, Pos: raw.Debounce.Pos}
		if raw.Debounce.Key.n != nil {
			s.Debounce.Key = c.exportedTemplate(raw.Debounce.Key.n, none, "debounce.key")
		}
		if raw.Debounce.Wait <= 0 {
			c.errorf(raw.Debounce.Pos, "debounce.wait must be a positive duration, like 10s")
		}
		switch sc := Scope(raw.Debounce.Scope.s); {
		case !raw.Debounce.Scope.set:
			s.Debounce.Scope = ScopeEndpoint
		case sc == ScopeEndpoint || sc == ScopeSite || sc == ScopePartner:
			s.Debounce.Scope = sc
		default:
			c.errorf(raw.Debounce.Scope.pos, "debounce.scope must be endpoint (the default), site or partner, not %q", raw.Debounce.Scope.s)
		}
	}
	if raw.SerializeBy.n != nil {
		s.SerializeBy = c.exportedTemplate(raw.SerializeBy.n, none, "serialize_by")
		s.SerializeByPos = yamlconf.PosOf(raw.SerializeBy.n)
	}

	known := map[string]bool{}
	firstAt := map[string]int{}
	if raw.Steps.n != nil {
		items, ok := c.d.Sequence(raw.Steps.n)
		if ok && len(items) == 0 {
			c.errorf(yamlconf.PosOf(raw.Steps.n), "steps is empty: a saga needs at least one step")
		}
		raws := make([]rawStep, len(items))
		for i, item := range items {
			c.d.Decode(item, &raws[i])
			if raws[i].name.set {
				c.all[raws[i].name.s] = true
			}
		}
		for i := range raws {
			if st := c.step(&raws[i], known, firstAt); st != nil {
				s.Steps = append(s.Steps, st)
			}
		}
	}
	if raw.OnFailure != nil && raw.OnFailure.kind != "" {
		s.OnFailure = c.action(raw.OnFailure, exprScope{steps: known, all: c.all, allowError: true}, "on_failure")
	}
	return s
}

func (c *compiler) step(rs *rawStep, known map[string]bool, firstAt map[string]int) *Step {
	st := &Step{Name: rs.name.s, Pos: rs.pos, Timeout: rs.timeout, ContinueOnError: rs.continueOnError, Retry: Retry{Attempts: 1}}
	label := fmt.Sprintf("step %q", st.Name)
	// The step's own scope: only steps before it. Copied, since known grows afterwards.
	before := exprScope{steps: maps.Clone(known), all: c.all}
	if rs.name.set {
		switch {
		case !stepNameRE.MatchString(rs.name.s):
			c.errorf(rs.name.pos, "bad step name %q: use lower-case letters, digits and _, starting with a letter", rs.name.s)
		case known[rs.name.s]:
			c.errorf(rs.name.pos, "duplicate step name %q (first used on line %d)", rs.name.s, firstAt[rs.name.s])
		default:
			known[rs.name.s] = true
			firstAt[rs.name.s] = rs.name.pos.Line
		}
	}
	if rs.when.set {
		st.When = rs.when.s
		if t := strings.TrimSpace(rs.when.s); strings.HasPrefix(t, "${") && strings.HasSuffix(t, "}") {
			c.errorf(rs.when.pos, "%s: when is a bare expression: write it without ${ }", label)
		} else {
			p, issues := compileExpr(rs.when.s, before, true)
			for _, is := range issues {
				c.errorf(rs.when.pos, "%s: when: %s (%s)", label, is.msg, exprWhere(is))
			}
			st.when = p
		}
	}
	if rs.retry != nil {
		r := rs.retry
		if r.Attempts.set {
			if r.Attempts.v < 1 {
				c.errorf(r.Attempts.pos, "%s: retry.attempts must be at least 1 (it counts every try, the first included), got %d", label, r.Attempts.v)
			}
			st.Retry.Attempts = r.Attempts.v
		}
		st.Retry.Backoff, st.Retry.MaxBackoff = r.Backoff, r.MaxBackoff
		if st.Retry.Backoff == 0 {
			st.Retry.Backoff = time.Second
		}
		if st.Retry.MaxBackoff == 0 {
			st.Retry.MaxBackoff = time.Minute
		}
		if st.Retry.MaxBackoff < st.Retry.Backoff {
			st.Retry.MaxBackoff = st.Retry.Backoff
		}
	}
	if rs.action.kind != "" {
		st.Action = c.action(&rs.action, before, label)
	}
	if rs.compensate != nil && rs.compensate.kind != "" {
		// A compensation may read its own step's output: that is what it undoes.
		self := exprScope{steps: maps.Clone(before.steps), all: c.all, allowError: true}
		if rs.name.set {
			self.steps[rs.name.s] = true
		}
		st.Compensate = c.action(rs.compensate, self, label+": compensate")
		if rs.compensate.kind == KindRespond {
			// By the time compensation runs the run has failed; on_failure answers the sender.
			c.errorf(rs.compensate.pos, "%s: compensate cannot respond: answer from on_failure instead", label)
		}
	}
	return st
}

// exprWhere says where inside an expression a problem is.
func exprWhere(is exprIssue) string {
	if is.line > 1 {
		return fmt.Sprintf("expression line %d column %d", is.line, is.column)
	}
	return fmt.Sprintf("expression column %d", is.column)
}

// value compiles a YAML value that may hold templates anywhere inside it.
func (c *compiler) value(n ast.Node, sc exprScope, label string) *value {
	n = c.d.Resolve(n)
	switch t := n.(type) {
	case nil, *ast.NullNode:
		return &value{kind: vConst, shape: "null"}
	case *ast.MappingNode, *ast.MappingValueNode:
		m := c.d.Mapping(t, "")
		v := &value{kind: vMap, shape: "mapping"}
		constant := true
		for _, mv := range m.Values {
			k := c.d.KeyName(mv)
			for _, prev := range v.keys {
				if prev == k {
					c.d.Errorf(mv.Key, "%s: key %q appears twice", label, k)
				}
			}
			child := c.value(mv.Value, sc, label+"."+k)
			v.keys = append(v.keys, k)
			v.vals = append(v.vals, child)
			v.refs = appendRefs(v.refs, child.refs)
			v.callsSecret = v.callsSecret || child.callsSecret
			constant = constant && child.kind == vConst
		}
		if constant {
			out := make(map[string]any, len(v.keys))
			for i, k := range v.keys {
				out[k] = v.vals[i].c
			}
			return &value{kind: vConst, c: out, shape: "mapping"}
		}
		return v
	case *ast.SequenceNode:
		v := &value{kind: vList, shape: "list"}
		constant := true
		for i, item := range t.Values {
			child := c.value(item, sc, fmt.Sprintf("%s[%d]", label, i))
			v.vals = append(v.vals, child)
			v.refs = appendRefs(v.refs, child.refs)
			v.callsSecret = v.callsSecret || child.callsSecret
			constant = constant && child.kind == vConst
		}
		if constant {
			out := make([]any, len(v.vals))
			for i, item := range v.vals {
				out[i] = item.c
			}
			return &value{kind: vConst, c: out, shape: "list"}
		}
		return v
	case *ast.StringNode, *ast.LiteralNode:
		s, _ := c.d.Scalar(t)
		if !strings.Contains(s, "${") {
			return &value{kind: vConst, c: s, shape: "string"}
		}
		tm := c.template(s, yamlconf.PosOf(t), sc, label)
		if tm == nil {
			return &value{kind: vConst, shape: "string"}
		}
		if len(tm.parts) == 1 && tm.parts[0].prog == nil {
			// Only escapes ($${): a constant after all.
			return &value{kind: vConst, c: tm.parts[0].lit, shape: "string"}
		}
		shape := "string"
		if tm.single {
			shape = "template"
		}
		return &value{kind: vTemplate, t: tm, refs: tm.refs, shape: shape, callsSecret: tm.callsSecret}
	}
	return &value{kind: vConst, c: c.d.Value(n), shape: nodeShape(n)}
}

func appendRefs(dst, src []string) []string {
	for _, r := range src {
		found := false
		for _, d := range dst {
			if d == r {
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, r)
		}
	}
	return dst
}

// template compiles one string holding `${ expr }` parts.
func (c *compiler) template(s string, pos yamlconf.Pos, sc exprScope, label string) *template {
	segs, err := parseTemplate(s)
	if err != nil {
		c.errorf(pos, "%s: %v", label, err)
		return nil
	}
	t := &template{single: len(segs) == 1 && segs[0].isExpr}
	ok := true
	for _, seg := range segs {
		if !seg.isExpr {
			t.parts = append(t.parts, tmplPart{lit: seg.lit})
			continue
		}
		p, issues := compileExpr(seg.expr, sc, false)
		for _, is := range issues {
			where := fmt.Sprintf("template column %d", seg.offset+is.column)
			if is.line > 1 {
				where = fmt.Sprintf("line %d column %d of the expression at template column %d", is.line, is.column, seg.offset+1)
			}
			c.errorf(pos, "%s: %s (%s)", label, is.msg, where)
			ok = false
		}
		if p != nil {
			t.parts = append(t.parts, tmplPart{prog: p})
			t.refs = appendRefs(t.refs, p.refs)
			t.callsSecret = t.callsSecret || p.callsSecret
		}
	}
	if !ok {
		return nil
	}
	return t
}

// exportedTemplate compiles a key template (debounce.key, serialize_by): text that may hold
// `${ }` parts.
func (c *compiler) exportedTemplate(n ast.Node, sc exprScope, label string) *Template {
	s, ok := c.d.Scalar(n)
	if !ok {
		c.d.Errorf(n, "%s: expected text, got a %s", label, nodeShape(c.d.Resolve(n)))
		return nil
	}
	t := c.template(s, yamlconf.PosOf(n), sc, label)
	if t == nil {
		return nil
	}
	return &Template{Source: s, t: t}
}

func nodeShape(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	case *ast.SequenceNode:
		return "list"
	case *ast.StringNode, *ast.LiteralNode:
		return "string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode:
		return "number"
	case *ast.BoolNode:
		return "bool"
	}
	return n.Type().String()
}

// action compiles one action by kind.
func (c *compiler) action(ra *rawAction, sc exprScope, label string) *Action {
	a := &Action{Kind: ra.kind, Pos: ra.pos}
	label = label + ": " + ra.kind
	switch ra.kind {
	case KindHTTP:
		a.http = c.httpAction(ra, sc, label)
	case KindSet:
		a.set = c.setAction(ra, sc, label)
	case KindKV:
		a.kv = c.kvAction(ra, sc, label)
	case KindRespond:
		a.respond = c.respondAction(ra, sc, label)
	case KindFail:
		a.fail = c.failAction(ra, sc, label)
	case KindLog:
		a.log = c.logAction(ra, sc, label)
	}
	return a
}

// CompileKey compiles a key template that lives outside a saga file — an endpoint's
// idempotency_key — against the same environment as debounce.key: the request, no steps.
// Errors are positioned relative to the value (line 1, column 1 = its first character) so
// the caller can shift them onto its own file.
func CompileKey(src, label string) (*Template, yamlconf.Errors) {
	c := &compiler{d: yamlconf.NewDecoder(""), all: map[string]bool{}}
	t := c.template(src, yamlconf.Pos{Line: 1, Column: 1}, exprScope{steps: map[string]bool{}, all: c.all}, label)
	if errs := c.d.Errors(); len(errs) > 0 || t == nil {
		return nil, errs
	}
	return &Template{Source: src, t: t}, nil
}
