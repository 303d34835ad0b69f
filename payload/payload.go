// Package payload checks request bodies against an endpoint's JSON Schema (draft 2020-12),
// compiled once when the configuration loads, and describes a failure as a short, bounded
// list of JSON pointers and reasons a sender can act on.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Bounds on what is read and what is reported.
const (
	// MaxFileBytes bounds each schema file read (the file named and every file it
	// references), as the YAML files' limit does.
	MaxFileBytes = 1 << 20
	// MaxProblems is how many of a body's problems are reported: the first few say what to
	// fix; a body with thousands of bad items must not make an answer of thousands of lines.
	MaxProblems = 5
	// MaxTextBytes bounds a problem's pointer and reason, which can quote the body (a key,
	// a string that does not match a pattern).
	MaxTextBytes = 200
	// MaxValues bounds the values (objects, arrays, strings, numbers, ...) of a body the
	// schema checks. The validator records every failure it finds, each a few hundred
	// bytes: a 1 MiB array of half a million failing items took 0.35 s and 220 MB. Up to
	// this many values a check costs at most a few milliseconds and megabytes; webhook
	// bodies have tens to hundreds.
	MaxValues = 20_000
)

// Schema is a compiled payload schema. It is immutable and safe for concurrent use.
type Schema struct {
	file string
	s    *jsonschema.Schema
	p    *message.Printer // the library's messages, in English
}

// File is the schema's path as the configuration names it.
func (s *Schema) File() string { return s.file }

// Problem is one way a body fails its schema: where (a JSON pointer into the body, "" for
// the body itself) and why.
type Problem struct {
	Pointer string `json:"pointer"`
	Reason  string `json:"reason"`
}

func (p Problem) String() string {
	if p.Pointer == "" { // the body itself; "/" would be the pointer to a key named ""
		return "at the root: " + p.Reason
	}
	return "at " + p.Pointer + ": " + p.Reason
}

// Compile reads and compiles the schema at path; name is how messages call it (the path as
// written in the configuration). Schemas without $schema are draft 2020-12. References are
// followed to local files only, each read no further than MaxFileBytes: a configuration
// never makes pushbackd fetch a URL. Errors say where in which file, without quoting it.
func Compile(path, name string) (*Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{"file": fileLoader{}})
	s, err := c.Compile(path)
	if err != nil {
		return nil, compileError(name, path, err)
	}
	return &Schema{file: name, s: s, p: message.NewPrinter(language.English)}, nil
}

// compileError keeps the library's message but names the file as configured; a syntax
// error says line and column.
func compileError(name, path string, err error) error {
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		var where []string
		for _, p := range problems(ve, message.NewPrinter(language.English)) {
			where = append(where, p.String())
		}
		return fmt.Errorf("schema %s: not a valid JSON Schema: %s", name, strings.Join(where, "; "))
	}
	var le *jsonschema.LoadURLError
	if !errors.As(err, &le) {
		return fmt.Errorf("schema %s: %w", name, err)
	}
	file := strings.TrimPrefix(le.URL, "file://")
	root, _ := filepath.Abs(path)
	se, ok := le.Err.(*syntaxError)
	switch {
	case ok && file == root:
		return fmt.Errorf("schema %s:%d:%d: %s", name, se.line, se.col, se.msg)
	case ok:
		return fmt.Errorf("schema %s: %s:%d:%d: %s", name, file, se.line, se.col, se.msg)
	case file == root:
		return fmt.Errorf("schema %s: %v", name, le.Err)
	}
	return fmt.Errorf("schema %s: cannot load %s: %v", name, file, le.Err)
}

// Check returns nil when body matches, else its first MaxProblems problems in the order the
// schema found them. body is the request body as sagas see it: a JSON value, a form or
// XML body as objects of strings, or text as a string.
func (s *Schema) Check(body any) []Problem {
	if n := countValues(body, MaxValues+1); n > MaxValues {
		return []Problem{{Reason: fmt.Sprintf("the body has more than %d values, more than a schema check takes", MaxValues)}}
	}
	err := s.s.Validate(body)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Problem{{Reason: bound(err.Error())}}
	}
	return problems(ve, s.p)
}

// problems are the first MaxProblems leaves of a validation error's tree: the specific
// failures, not the "allOf failed" above them.
func problems(ve *jsonschema.ValidationError, printer *message.Printer) []Problem {
	var out []Problem
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(out) == MaxProblems {
			return
		}
		if len(e.Causes) == 0 {
			p := Problem{Pointer: bound(pointer(e.InstanceLocation)), Reason: bound(e.ErrorKind.LocalizedString(printer))}
			for _, q := range out {
				if q == p {
					return
				}
			}
			out = append(out, p)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// countValues counts v's values, stopping at limit.
func countValues(v any, limit int) int {
	n := 0
	var walk func(v any)
	walk = func(v any) {
		if n >= limit {
			return
		}
		n++
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return n
}

// pointer is an RFC 6901 JSON pointer.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// bound cuts s to MaxTextBytes at a character boundary, marking the cut.
func bound(s string) string {
	if len(s) <= MaxTextBytes {
		return s
	}
	cut := MaxTextBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// fileLoader reads schema files no further than MaxFileBytes.
type fileLoader struct{}

func (fileLoader) Load(url string) (any, error) {
	path, err := jsonschema.FileLoader{}.ToFile(url)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxFileBytes {
		return nil, fmt.Errorf("%s is over the limit of %d bytes", path, MaxFileBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		return nil, positioned(src, err)
	}
	return doc, nil
}

// syntaxError is a JSON syntax error with its line and column.
type syntaxError struct {
	line, col int
	msg       string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%d:%d: %s", e.line, e.col, e.msg) }

// positioned gives a JSON syntax error its line and column: json.SyntaxError's offset
// counts the offending byte, an early end is after the last one.
func positioned(src []byte, err error) error {
	var se *json.SyntaxError
	var at int
	switch {
	case errors.As(err, &se):
		at = max(int(se.Offset)-1, 0)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		at = len(src)
	default:
		return err
	}
	before := src[:min(at, len(src))]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return &syntaxError{line: line, col: col, msg: err.Error()}
}
