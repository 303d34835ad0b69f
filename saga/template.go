package saga

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// segment is one piece of a template string: literal text, or the source of one `${ expr }`.
type segment struct {
	lit    string
	expr   string
	isExpr bool
	// offset is the 0-based rune offset in the template where the expression's source starts
	// (just after "${"), so errors can point inside the string.
	offset int
}

// errTemplate is wrapped by every template syntax error.
var errTemplate = errors.New("template")

// parseTemplate splits s into literal and expression segments. "${" opens an expression that
// runs to its matching "}" — braces inside the expression (map literals) and inside its string
// literals are skipped — and "$${" is a literal "${". The result does not depend on expr, so
// rendering never re-parses and the fuzz target can check the splitter alone.
func parseTemplate(s string) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	runes := 0 // rune offset of byte i
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			lit.WriteString("${")
			i += 3
			runes += 3
		case strings.HasPrefix(s[i:], "${"):
			start := i + 2
			end, err := exprEnd(s, start)
			if err != nil {
				return nil, fmt.Errorf("%w: %w (template column %d)", errTemplate, err, runes+1)
			}
			src := s[start:end]
			if strings.TrimSpace(src) == "" {
				return nil, fmt.Errorf("%w: empty ${ } (template column %d)", errTemplate, runes+1)
			}
			flush()
			segs = append(segs, segment{expr: src, isExpr: true, offset: runes + 2})
			runes += 2 + utf8.RuneCountInString(src) + 1
			i = end + 1
		default:
			_, size := utf8.DecodeRuneInString(s[i:])
			lit.WriteString(s[i : i+size])
			i += size
			runes++
		}
	}
	flush()
	return segs, nil
}

// exprEnd returns the index of the "}" closing an expression that starts at start.
func exprEnd(s string, start int) (int, error) {
	depth := 0
	for i := start; i < len(s); i++ {
		switch c := s[i]; c {
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return i, nil
			}
			depth--
		case '"', '\'', '`':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(s) {
				return 0, errors.New("unterminated string literal in ${ }")
			}
			i = j
		}
	}
	return 0, errors.New("${ without a closing }")
}

// template is a compiled template string.
type template struct {
	parts []tmplPart
	// single is a template that is exactly one `${ expr }`: it renders to the expression's
	// value with its type (map, list, number, bool), not to text.
	single bool
	refs   []string // step names referenced, for Plan
	// callsSecret: some part calls secret().
	callsSecret bool
}

type tmplPart struct {
	lit  string
	prog *program // nil for literal text
}

func (t *template) render(ev *evaluator) (any, error) {
	if t.single {
		return ev.eval(t.parts[0].prog)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := ev.eval(p.prog)
		if err != nil {
			return nil, err
		}
		b.WriteString(stringify(v))
	}
	return b.String(), nil
}

// Template is a compiled template string exported for the store's debounce and serialize_by
// keys.
type Template struct {
	Source string
	t      *template
}

// stringify renders a value inside a string: text as-is, numbers and booleans as Go prints
// them, nil as nothing, times as RFC 3339, maps and lists as JSON.
func stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		return x.String()
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// value is a compiled YAML value: a constant, a template string, or a map or list holding
// templates somewhere below. Subtrees without templates are folded into constants at load.
type value struct {
	kind  valueKind
	c     any
	t     *template
	keys  []string
	vals  []*value // map values, parallel to keys; list items
	refs  []string
	shape string // "mapping", "list", "string", ... of the YAML node, for validation
	// callsSecret: a template somewhere in this value calls secret().
	callsSecret bool
}

type valueKind uint8

const (
	vConst valueKind = iota
	vTemplate
	vMap
	vList
)

// render produces the value for one run. Constants are shared, never copied: nothing
// downstream mutates rendered values.
func (v *value) render(ev *evaluator) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch v.kind {
	case vTemplate:
		return v.t.render(ev)
	case vMap:
		m := make(map[string]any, len(v.keys))
		for i, k := range v.keys {
			x, err := v.vals[i].render(ev)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			m[k] = x
		}
		return m, nil
	case vList:
		l := make([]any, len(v.vals))
		for i, item := range v.vals {
			x, err := item.render(ev)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			l[i] = x
		}
		return l, nil
	}
	return v.c, nil
}
