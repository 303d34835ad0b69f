// Package yamlconf decodes YAML configuration strictly and reports every problem at once,
// each with the file, line and column it comes from.
//
// goccy/go-yaml's own strict decoder stops at the first error; an admin fixing a partner
// file wants the whole list, so this package walks the AST itself. Decoding is driven by
// `yaml:"name"` struct tags (`yaml:"name,required"` makes a key mandatory); unknown keys,
// wrong types and bad durations become positioned errors and decoding carries on.
package yamlconf

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// Pos is a 1-based line and column in a YAML file.
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Error is one problem in one file.
type Error struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func (e Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Message)
}

// Errors is every problem found, in the order found.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns nil when there are no errors, so callers can `return errs.Err()`.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Sort orders errors by file, line and column so output is stable across map iteration.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// AsErrors unpacks err into Errors: Errors as they are, a single Error as a list of one, and
// anything else as one error without position.
func AsErrors(err error) Errors {
	if err == nil {
		return nil
	}
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Message: err.Error()}}
}

// Unmarshaler is implemented by types that decode their own node (a secret reference, a saga
// step with exactly one action). They report problems through d.Errorf and keep going.
type Unmarshaler interface {
	UnmarshalYAMLNode(d *Decoder, n ast.Node)
}

// Decoder collects errors for one file. Reset lets one decoder serve many files in turn,
// keeping what it learnt about Go types and the short strings it has met.
type Decoder struct {
	File string
	errs Errors

	// types memoises reflection per Go type: a partner file decodes hundreds of structs
	// of a handful of types, and walking their tags each time cost more than decoding.
	types map[reflect.Type]*typeInfo
	// strs interns short strings (names, modes, header names) so thousands of endpoints
	// that say `saga: bench-sync` keep one copy instead of one each.
	strs map[string]string
}

// NewDecoder returns a decoder whose errors name file.
func NewDecoder(file string) *Decoder {
	return &Decoder{File: file}
}

// Reset readies d for another file: errors start afresh, the type and string caches carry
// over. Errors returned before stay valid; d no longer touches them.
func (d *Decoder) Reset(file string) {
	d.File = file
	d.errs = nil
}

// Errors returns what has been collected so far.
func (d *Decoder) Errors() Errors { return d.errs }

// Errorf records a problem at n's position.
func (d *Decoder) Errorf(n ast.Node, format string, args ...any) {
	p := PosOf(n)
	d.ErrorAt(p, format, args...)
}

// ErrorAt records a problem at p.
func (d *Decoder) ErrorAt(p Pos, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.File, Line: p.Line, Column: p.Column, Message: fmt.Sprintf(format, args...)})
}

// PosOf is the position of n's first token, or 1:1 when n carries none.
func PosOf(n ast.Node) Pos {
	if n == nil || reflect.ValueOf(n).IsNil() {
		return Pos{Line: 1, Column: 1}
	}
	if m, ok := n.(*ast.MappingNode); ok && len(m.Values) > 0 && !m.IsFlowStyle {
		// A block mapping's own token is its first ':'; the first key reads better.
		return PosOf(m.Values[0].Key)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Pos{Line: 1, Column: 1}
	}
	return Pos{Line: tk.Position.Line, Column: tk.Position.Column}
}

// Parse reads one YAML document. An empty file gives a nil node and no error; a syntax error
// or a document over one of the limits (MaxBytes, MaxTokens, MaxDepth, MaxMappingKeys,
// MaxKeyPath, MaxNodes, or an alias cycle) is returned positioned. Aliases in the returned
// tree are bound to their anchors in document order; decoding follows those bindings.
func Parse(file string, src []byte) (ast.Node, Errors) {
	refuse := func(e *limitError) (ast.Node, Errors) {
		return nil, Errors{{File: file, Line: e.pos.Line, Column: e.pos.Column, Message: e.msg}}
	}
	if e := checkSize(src); e != nil {
		return refuse(e)
	}
	tokens := lexer.Tokenize(string(src))
	if e := scanTokens(tokens); e != nil {
		return refuse(e)
	}
	f, err := parser.Parse(tokens, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			p := ye.GetToken().Position
			return nil, Errors{{File: file, Line: max(p.Line, 1), Column: max(p.Column, 1), Message: ye.GetMessage()}}
		}
		return nil, Errors{{File: file, Line: 1, Column: 1, Message: err.Error()}}
	}
	if len(f.Docs) == 0 || f.Docs[0] == nil || f.Docs[0].Body == nil {
		return nil, nil
	}
	if len(f.Docs) > 1 {
		return nil, Errors{{File: file, Line: PosOf(f.Docs[1].Body).Line, Column: 1, Message: "only one YAML document per file"}}
	}
	root, e := bindAliases(f.Docs[0].Body)
	if e != nil {
		return refuse(e)
	}
	// A document that is only null, or a tag or anchor on nothing, holds no configuration:
	// report it as empty rather than decode it into zero values without a word.
	body := root
	for {
		switch t := body.(type) {
		case *ast.TagNode:
			body = t.Value
			continue
		case *ast.AnchorNode:
			body = t.Value
			continue
		}
		break
	}
	if IsNull(body) || (reflect.ValueOf(body).Kind() == reflect.Pointer && reflect.ValueOf(body).IsNil()) {
		return nil, nil
	}
	return root, nil
}

// DecodeFile parses src and decodes it into out, returning every problem.
func DecodeFile(file string, src []byte, out any) Errors {
	n, errs := Parse(file, src)
	if errs != nil {
		return errs
	}
	d := NewDecoder(file)
	if n == nil {
		d.ErrorAt(Pos{1, 1}, "file is empty")
		return d.errs
	}
	d.Decode(n, out)
	return d.errs
}

// Decode decodes n into out (a pointer), recording problems and continuing past them.
func (d *Decoder) Decode(n ast.Node, out any) {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		panic("yamlconf: Decode needs a non-nil pointer")
	}
	d.decode(n, v.Elem())
}

var (
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
	posType         = reflect.TypeFor[Pos]()
)

// resolve strips anchors, tags and aliases so callers see the value node. Parse bound each
// alias it could to its anchor; one left unbound names no anchor before it.
func (d *Decoder) resolve(n ast.Node) ast.Node {
	for {
		switch t := n.(type) {
		case *ast.AnchorNode:
			n = t.Value
		case *ast.TagNode:
			n = t.Value
		case *boundAlias:
			n = t.target
		case *ast.AliasNode:
			d.Errorf(n, "unknown alias *%s", t.Value.GetToken().Value)
			return nil
		default:
			return n
		}
	}
}

// unwrap is resolve without the error for an unknown alias, for describing a node.
func unwrap(n ast.Node) ast.Node {
	for {
		switch t := n.(type) {
		case *ast.AnchorNode:
			n = t.Value
		case *ast.TagNode:
			n = t.Value
		case *boundAlias:
			n = t.target
		default:
			return n
		}
	}
}

// Resolve is resolve for Unmarshaler implementations.
func (d *Decoder) Resolve(n ast.Node) ast.Node { return d.resolve(n) }

// IsNull reports whether n is absent or an explicit null.
func IsNull(n ast.Node) bool {
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

func (d *Decoder) decode(n ast.Node, v reflect.Value) {
	n = d.resolve(n)
	if n == nil {
		return
	}
	ti := d.typeOf(v.Type())
	if ti.unmarshaler && v.CanAddr() {
		v.Addr().Interface().(Unmarshaler).UnmarshalYAMLNode(d, n)
		return
	}
	if IsNull(n) {
		v.SetZero()
		return
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem())
	case reflect.Struct:
		d.decodeStruct(n, v, ti)
	case reflect.Map:
		d.decodeMap(n, v)
	case reflect.Slice:
		d.decodeSlice(n, v)
	case reflect.Interface:
		if v.NumMethod() != 0 {
			panic("yamlconf: cannot decode into non-empty interface " + v.Type().String())
		}
		if val := d.Value(n); val != nil {
			v.Set(reflect.ValueOf(val))
		}
	case reflect.String:
		s, ok := d.Scalar(n)
		if !ok {
			d.Errorf(n, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(d.intern(s))
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.Errorf(n, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := n.(*ast.IntegerNode)
		if !ok {
			d.Errorf(n, "expected an integer, got %s", kindName(n))
			return
		}
		x, ok := intValue(i)
		if !ok || v.OverflowInt(x) {
			d.Errorf(n, "integer %s out of range", i.GetToken().Value)
			return
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, ok := n.(*ast.IntegerNode)
		if !ok {
			d.Errorf(n, "expected an integer, got %s", kindName(n))
			return
		}
		x, ok := uintValue(i)
		if !ok || v.OverflowUint(x) {
			d.Errorf(n, "expected a non-negative integer, got %s", i.GetToken().Value)
			return
		}
		v.SetUint(x)
	case reflect.Float32, reflect.Float64:
		switch t := n.(type) {
		case *ast.FloatNode:
			v.SetFloat(t.Value)
		case *ast.IntegerNode:
			v.SetFloat(floatValue(t))
		default:
			d.Errorf(n, "expected a number, got %s", kindName(n))
		}
	default:
		panic("yamlconf: unsupported kind " + v.Kind().String())
	}
}

// intValue is an integer node's value as int64; goccy holds it as int64 or, past
// MaxInt64, uint64. (Formatting it to text and parsing that back cost an allocation per
// number.)
func intValue(i *ast.IntegerNode) (int64, bool) {
	switch x := i.Value.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
		return 0, false
	}
	x, err := strconv.ParseInt(fmt.Sprint(i.Value), 10, 64)
	return x, err == nil
}

// uintValue is intValue for unsigned fields: negative numbers do not fit.
func uintValue(i *ast.IntegerNode) (uint64, bool) {
	switch x := i.Value.(type) {
	case int64:
		if x >= 0 {
			return uint64(x), true
		}
		return 0, false
	case uint64:
		return x, true
	}
	x, err := strconv.ParseUint(fmt.Sprint(i.Value), 10, 64)
	return x, err == nil
}

func floatValue(i *ast.IntegerNode) float64 {
	switch x := i.Value.(type) {
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	f, _ := strconv.ParseFloat(fmt.Sprint(i.Value), 64)
	return f
}

// Interning limits: secrets and ids are unique and long-ish; a bounded table keeps the
// cost of meeting many of them to a failed lookup.
const (
	internMaxLen     = 64
	internMaxEntries = 4096
)

// intern returns a copy of s already held, if any, so repeated values share memory.
func (d *Decoder) intern(s string) string {
	if len(s) > internMaxLen {
		return s
	}
	if t, ok := d.strs[s]; ok {
		return t
	}
	if d.strs == nil {
		d.strs = make(map[string]string, 64)
	}
	if len(d.strs) < internMaxEntries {
		d.strs[s] = s
	}
	return s
}

func (d *Decoder) decodeDuration(n ast.Node, v reflect.Value) {
	s, ok := d.Scalar(n)
	if !ok {
		d.Errorf(n, "expected a duration like 5s or 1m30s, got %s", kindName(n))
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.Errorf(n, "invalid duration %q: use a number with a unit, like 500ms, 5s or 1m30s", s)
		return
	}
	if dur < 0 {
		d.Errorf(n, "duration %q must not be negative", s)
		return
	}
	v.SetInt(int64(dur))
}

// Scalar returns a scalar node's text. Numbers and booleans count as text so that
// `username: 12345` reads as the string "12345".
func (d *Decoder) Scalar(n ast.Node) (string, bool) {
	switch t := d.resolve(n).(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.LiteralNode:
		return t.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return t.GetToken().Value, true
	}
	return "", false
}

type fieldInfo struct {
	index    int
	name     string
	required bool
}

// typeInfo is what decode needs to know about a Go type, computed once per decoder.
type typeInfo struct {
	unmarshaler bool        // *T implements Unmarshaler
	fields      []fieldInfo // structs: the decodable fields, in declaration order
	posIndex    int         // structs: the untagged Pos field, or -1
}

func (d *Decoder) typeOf(t reflect.Type) *typeInfo {
	if ti, ok := d.types[t]; ok {
		return ti
	}
	ti := &typeInfo{unmarshaler: reflect.PointerTo(t).Implements(unmarshalerType), posIndex: -1}
	if t.Kind() == reflect.Struct {
		ti.fields, ti.posIndex = structFields(t)
	}
	if d.types == nil {
		d.types = map[reflect.Type]*typeInfo{}
	}
	d.types[t] = ti
	return ti
}

func structFields(t reflect.Type) (fields []fieldInfo, posIndex int) {
	posIndex = -1
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if f.Type == posType && (tag == "" || tag == "-") {
			posIndex = i
			continue
		}
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields = append(fields, fieldInfo{index: i, name: name, required: strings.Contains(opts, "required")})
	}
	return fields, posIndex
}

// Mapping returns n as a mapping node, or records an error and returns nil.
func (d *Decoder) Mapping(n ast.Node, what string) *ast.MappingNode {
	switch t := d.resolve(n).(type) {
	case *ast.MappingNode:
		return t
	case *ast.MappingValueNode:
		// goccy represents a one-key mapping as a bare MappingValueNode.
		return &ast.MappingNode{BaseNode: t.BaseNode, Start: t.Start, Values: []*ast.MappingValueNode{t}}
	}
	if what == "" {
		what = "a mapping"
	}
	d.Errorf(n, "expected %s, got %s", what, kindName(n))
	return nil
}

// Sequence returns n's items, or records an error and returns ok=false.
func (d *Decoder) Sequence(n ast.Node) ([]ast.Node, bool) {
	if s, ok := d.resolve(n).(*ast.SequenceNode); ok {
		return s.Values, true
	}
	d.Errorf(n, "expected a list, got %s", kindName(n))
	return nil, false
}

// KeyName is the text of a mapping key.
func (d *Decoder) KeyName(mv *ast.MappingValueNode) string {
	if s, ok := d.Scalar(mv.Key); ok {
		return s
	}
	return mv.Key.String()
}

func (d *Decoder) decodeStruct(n ast.Node, v reflect.Value, ti *typeInfo) {
	m := d.Mapping(n, "")
	if m == nil {
		return
	}
	fields := ti.fields
	if ti.posIndex >= 0 {
		*v.Field(ti.posIndex).Addr().Interface().(*Pos) = PosOf(m)
	}
	// Structs have a few dozen fields at most: a scan beats building a map per node, and
	// the seen set lives on the stack.
	var seenBuf [64]bool
	seen := seenBuf[:]
	if len(fields) > len(seenBuf) {
		seen = make([]bool, len(fields))
	}
	for _, mv := range m.Values {
		key := d.KeyName(mv)
		fi := -1
		for i := range fields {
			if fields[i].name == key {
				fi = i
				break
			}
		}
		if fi < 0 {
			d.Errorf(mv.Key, "unknown key %q%s", key, suggest(key, fields))
			continue
		}
		f := fields[fi]
		if seen[fi] {
			d.Errorf(mv.Key, "key %q appears twice", key)
			continue
		}
		seen[fi] = true
		if f.required && IsNull(d.resolve(mv.Value)) {
			d.Errorf(mv.Key, "%s must not be empty", key)
			continue
		}
		d.decode(mv.Value, v.Field(f.index))
	}
	for i, f := range fields {
		if f.required && !seen[i] {
			d.Errorf(m, "missing required key %q", f.name)
		}
	}
}

func suggest(key string, fields []fieldInfo) string {
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		if strings.EqualFold(f.name, key) || strings.ReplaceAll(f.name, "_", "") == strings.ReplaceAll(strings.ToLower(key), "-", "") {
			return fmt.Sprintf(" (did you mean %q?)", f.name)
		}
		names = append(names, f.name)
	}
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

func (d *Decoder) decodeMap(n ast.Node, v reflect.Value) {
	m := d.Mapping(n, "")
	if m == nil {
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("yamlconf: map keys must be strings")
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(m.Values)))
	}
	kt, et := v.Type().Key(), v.Type().Elem()
	for _, mv := range m.Values {
		key := reflect.New(kt).Elem()
		key.SetString(d.intern(d.KeyName(mv)))
		elem := reflect.New(et).Elem()
		d.decode(mv.Value, elem)
		v.SetMapIndex(key, elem)
	}
}

func (d *Decoder) decodeSlice(n ast.Node, v reflect.Value) {
	items, ok := d.Sequence(n)
	if !ok {
		return
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	et := v.Type().Elem()
	structs := et.Kind() == reflect.Pointer && et.Elem().Kind() == reflect.Struct && !d.typeOf(et).unmarshaler
	for i, item := range items {
		if structs {
			// A nil item would reach validation as a nil pointer; an empty `- ` is a slip.
			if r := d.resolve(item); r == nil {
				continue // an unknown alias, already reported
			} else if IsNull(r) {
				d.Errorf(item, "expected a mapping, got nothing (null)")
				continue
			}
		}
		d.decode(item, s.Index(i))
	}
	v.Set(s)
}

// Value converts n into plain Go values: map[string]any, []any, string, int, float64, bool
// or nil — the shapes encoding/json produces, so saga bodies behave alike from either.
func (d *Decoder) Value(n ast.Node) any {
	n = d.resolve(n)
	switch t := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.MappingNode, *ast.MappingValueNode:
		m := d.Mapping(t, "")
		out := make(map[string]any, len(m.Values))
		for _, mv := range m.Values {
			out[d.intern(d.KeyName(mv))] = d.Value(mv.Value)
		}
		return out
	case *ast.SequenceNode:
		out := make([]any, len(t.Values))
		for i, item := range t.Values {
			out[i] = d.Value(item)
		}
		return out
	case *ast.BoolNode:
		return t.Value
	case *ast.IntegerNode:
		switch x := t.Value.(type) {
		case int64:
			return int(x)
		case uint64:
			if x <= 1<<62 {
				return int(x)
			}
			return float64(x)
		}
		return t.Value
	case *ast.FloatNode:
		return t.Value
	case *ast.StringNode:
		return d.intern(t.Value)
	case *ast.LiteralNode:
		return t.Value.Value
	case *ast.InfinityNode:
		return t.Value
	case *ast.NanNode:
		d.Errorf(n, "NaN is not a usable value")
		return nil
	}
	d.Errorf(n, "unsupported YAML value %s", kindName(n))
	return nil
}

func kindName(n ast.Node) string {
	n = unwrap(n)
	switch n.(type) {
	case nil, *ast.NullNode:
		return "nothing (null)"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return n.Type().String()
}
