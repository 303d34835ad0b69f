// Package jsondec decodes a JSON document into the dynamic values encoding/json gives for
// `var v any` — map[string]any, []any, string, float64, bool and nil — with fewer
// allocations. Every accepted request body is decoded this way, and encoding/json.Unmarshal
// was ~18% of the objects allocated per request in the bench's allocation profile (its
// unquote alone 8.6%: one string per key and per value).
//
// The savings: the input is copied to one string once, and every key and string value
// without escapes is a substring of it, so it costs no allocation of its own (a key costs
// nothing; a string value only its interface box). Only strings with escapes or invalid
// UTF-8 get their own. A consequence to know: a string taken from the result keeps the whole
// input copy alive; the input is a request body, bounded by limits.max_body_bytes.
//
// The result is exactly what json.Unmarshal gives for every valid input (duplicate keys: last
// wins; invalid UTF-8 and lone surrogates become U+FFFD; numbers through
// strconv.ParseFloat; nesting deeper than MaxDepth refused) and Decode fails exactly when
// json.Unmarshal does (FuzzDecodeMatchesEncodingJSON). Its errors say where, not what: a
// caller that shows errors to users asks encoding/json for the message.
//
// Measured with go test ./internal/jsondec -run '^$' -bench . -benchmem -count 5 (medians;
// linux/amd64, 2 cores shared with other work, so ns/op is noisy):
//
//	BenchmarkDecode/encompass-loan-milestone (592 B)   2.7 µs   2536 B/op   24 allocs/op
//	BenchmarkEncodingJSON/encompass-loan-milestone      5.9 µs   2672 B/op   55 allocs/op
//	BenchmarkDecode/twelve-events (5.1 KB)              22 µs   21224 B/op  203 allocs/op
//	BenchmarkEncodingJSON/twelve-events                 66 µs   20440 B/op  436 allocs/op
//
// Bytes stay about the same (the one copy of the input stands for the many small strings);
// objects, and the GC work they cost, halve.
package jsondec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest: encoding/json's own bound, so both
// refuse the same documents and the recursion that builds them stays bounded.
const MaxDepth = 10000

// errDepth is the one error with a fixed reason.
var errDepth = errors.New("exceeded max depth")

// Decode returns what json.Unmarshal(raw, &v) stores in `var v any`, or an error exactly when
// json.Unmarshal returns one.
func Decode(raw []byte) (any, error) {
	d := decoder{s: string(raw)}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.i < len(d.s) {
		return nil, d.fail("unexpected data after the top-level value")
	}
	return v, nil
}

type decoder struct {
	s string
	i int
}

func (d *decoder) fail(what string) error {
	return fmt.Errorf("%s at offset %d", what, d.i)
}

func (d *decoder) skipSpace() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value decodes the value at d.i, which is not whitespace; depth counts the containers it
// is inside.
func (d *decoder) value(depth int) (any, error) {
	if d.i >= len(d.s) {
		return nil, d.fail("unexpected end of input")
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return s, nil
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, d.fail("invalid character")
}

func (d *decoder) literal(word string) error {
	if !strings.HasPrefix(d.s[d.i:], word) {
		return d.fail("invalid literal")
	}
	d.i += len(word)
	return nil
}

func (d *decoder) object(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errDepth
	}
	d.i++ // '{'
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return map[string]any{}, nil
	}
	// Maps and slices grow as they fill, as encoding/json's do: building them at their close
	// at exact size from a scratch stack cost more bytes and time on real bodies, whose
	// objects are small (BenchmarkDecode, measured both ways).
	m := map[string]any{}
	for {
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, d.fail("expected a string key")
		}
		key, err := d.str()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, d.fail("expected a colon")
		}
		d.i++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[key] = v // in order, so a duplicate key's last value wins
		if more, err := d.more('}', "brace"); err != nil || !more {
			return orNil(m, err), err
		}
	}
}

// orNil is v, or nil when err is set: a failed container returns nothing half built.
func orNil(v any, err error) any {
	if err != nil {
		return nil
	}
	return v
}

// more reads what follows a member or an element: a comma, after which another follows
// (true), or the container's closing byte (false); what names that byte for the error.
func (d *decoder) more(closing byte, what string) (bool, error) {
	d.skipSpace()
	if d.i >= len(d.s) {
		return false, d.fail("unexpected end of input")
	}
	switch d.s[d.i] {
	case ',':
		d.i++
		d.skipSpace()
		return true, nil
	case closing:
		d.i++
		return false, nil
	}
	return false, d.fail("expected a comma or a closing " + what)
}

func (d *decoder) array(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, errDepth
	}
	d.i++ // '['
	d.skipSpace()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return []any{}, nil
	}
	var a []any
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		if more, err := d.more(']', "bracket"); err != nil || !more {
			return orNil(a, err), err
		}
	}
}

// number checks the JSON number grammar, which strconv.ParseFloat alone would not (it takes
// "+1", ".5", "0x10", "Inf"), and converts with it as encoding/json does; a number out of
// float64's range is an error there too.
func (d *decoder) number() (any, error) {
	start := d.i
	if d.s[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.i < len(d.s) && '1' <= d.s[d.i] && d.s[d.i] <= '9':
		d.skipDigits()
	default:
		return nil, d.fail("expected a digit")
	}
	if d.i < len(d.s) && d.s[d.i] == '.' {
		d.i++
		if !d.skipDigits() {
			return nil, d.fail("expected a digit after the decimal point")
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if !d.skipDigits() {
			return nil, d.fail("expected a digit in the exponent")
		}
	}
	f, err := strconv.ParseFloat(d.s[start:d.i], 64)
	if err != nil {
		return nil, fmt.Errorf("number %s at offset %d: %w", d.s[start:d.i], start, err)
	}
	return f, nil
}

// skipDigits reports whether there was at least one.
func (d *decoder) skipDigits() bool {
	start := d.i
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// str decodes the string whose opening quote is at d.i. One that needs no change — no
// escapes, valid UTF-8 — is returned as a substring of the input.
func (d *decoder) str() (string, error) {
	d.i++ // '"'
	start := d.i
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return d.s[start : d.i-1], nil
		case c == '\\':
			return d.unquote(start)
		case c < ' ':
			return "", d.fail("control character in string")
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, size := utf8.DecodeRuneInString(d.s[d.i:])
			if r == utf8.RuneError && size == 1 {
				return d.unquote(start)
			}
			d.i += size
		}
	}
	return "", d.fail("unexpected end of input in string")
}

// unquote finishes the string that started at start, from d.i, where the first escape or
// invalid UTF-8 byte is, building it as encoding/json's unquote does: an invalid byte is
// U+FFFD, and so is a \u surrogate that is not the first half of a pair.
func (d *decoder) unquote(start int) (string, error) {
	// The unquoted string is never longer than the quoted one but where U+FFFD's three bytes
	// stand for one invalid byte, so one Grow to the closing quote is nearly always enough.
	end := d.i
	for end < len(d.s) && d.s[end] != '"' {
		if d.s[end] == '\\' {
			end++
		}
		end++
	}
	var b strings.Builder
	b.Grow(min(end, len(d.s)) - start)
	b.WriteString(d.s[start:d.i])
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return b.String(), nil
		case c < ' ':
			return "", d.fail("control character in string")
		case c == '\\':
			if d.i+1 >= len(d.s) {
				return "", d.fail("unexpected end of input in string")
			}
			e := d.s[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r := hex4(d.s[d.i:])
				if r < 0 {
					return "", d.fail("invalid \\u escape")
				}
				d.i += 4
				if utf16.IsSurrogate(r) {
					// Only a following \u escape can complete the pair; if it does not, this
					// half is U+FFFD and that escape is decoded on its own.
					r2 := rune(-1)
					if strings.HasPrefix(d.s[d.i:], `\u`) {
						r2 = hex4(d.s[d.i+2:])
					}
					if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
						d.i += 6
						r = pair
					} else {
						r = utf8.RuneError
					}
				}
				b.WriteRune(r)
			default:
				d.i -= 2
				return "", d.fail("invalid escape")
			}
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			d.i++
		default:
			r, size := utf8.DecodeRuneInString(d.s[d.i:])
			if r == utf8.RuneError && size == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.WriteString(d.s[d.i : d.i+size])
			}
			d.i += size
		}
	}
	return "", d.fail("unexpected end of input in string")
}

// hex4 is the value of the four hex digits s starts with, or -1.
func hex4(s string) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range []byte(s[:4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
