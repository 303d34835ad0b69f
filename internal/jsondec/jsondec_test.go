package jsondec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// identical is reflect.DeepEqual for the values JSON decodes to, except that it also tells
// -0 from 0, which == (and so DeepEqual) does not. JSON has no NaN.
func identical(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !identical(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !identical(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

// agree fails unless Decode and json.Unmarshal agree on data: both fail, or both give
// identical values. It reports whether they failed.
func agree(t testing.TB, data []byte) bool {
	t.Helper()
	var want any
	wantErr := json.Unmarshal(data, &want)
	got, err := Decode(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: Decode error %v, encoding/json error %v", clip(data), err, wantErr)
	}
	if err == nil && !identical(got, want) {
		t.Fatalf("%q:\n Decode gives %#v\n encoding/json %#v", clip(data), got, want)
	}
	return err != nil
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "..."...)
	}
	return b
}

func nested(open, close string, n int) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"a NUL escape becomes a NUL byte", `"a\u0000b"`, false},
		{"every short escape is decoded", `"\" \\ \/ \b \f \n \r \t"`, false},
		{"an escaped surrogate pair becomes one rune", `"\ud83d\ude00"`, false},
		{"an upper-case surrogate pair becomes one rune", `"x\uD83D\uDE00y"`, false},
		{"a lone high surrogate becomes U+FFFD", `"\ud83d"`, false},
		{"a lone low surrogate becomes U+FFFD", `"\ude00x"`, false},
		{"a high surrogate before a non-surrogate escape keeps that escape", `"\ud83d\u0041"`, false},
		{"two high surrogates are two U+FFFD", `"\ud83d\ud83d"`, false},
		{"a high surrogate before plain text is U+FFFD", `"\ud83dabcdef"`, false},
		{"a high surrogate before a bad escape is refused", `"\ud83d\uZZZZ"`, true},
		{"a reversed surrogate pair is two U+FFFD", `"\ude00\ud83d"`, false},
		{"an invalid UTF-8 byte in a string becomes U+FFFD", "\"a\xffb\"", false},
		{"an invalid UTF-8 byte after an escape becomes U+FFFD", "\"\\n\xff\xfe\"", false},
		{"a UTF-8 encoded surrogate is three U+FFFD", "\"\xed\xa0\x80\"", false},
		{"a truncated UTF-8 sequence becomes U+FFFD", "[\"\xe2\x82\"]", false},
		{"an invalid UTF-8 byte in a key becomes U+FFFD", "{\"k\xc0\":1}", false},
		{"a literal U+FFFD stays", "\"\xef\xbf\xbd\"", false},
		{"valid multi-byte UTF-8 stays", `"héllo, 世界 😀"`, false},
		{"an escaped key is decoded", `{"a\tb":"c\u00e9"}`, false},
		{"a raw control character in a string is refused", "\"a\tb\"", true},
		{"DEL in a string is allowed", "\"a\x7fb\"", false},
		{"an unknown escape is refused", `"\x41"`, true},
		{"a short \\u escape is refused", `"\u12"`, true},
		{"an unterminated string is refused", `"abc`, true},
		{"an unterminated escape is refused", `"abc\`, true},
		{"a number out of float64 range is refused", `1e400`, true},
		{"a negative number out of range is refused", `[-1e400]`, true},
		{"a number that underflows is zero", `1e-400`, false},
		{"negative zero stays negative", `-0`, false},
		{"negative zero as a float stays negative", `[-0.0, -0e5]`, false},
		{"an upper-case exponent with a plus sign", `1E+2`, false},
		{"a negative exponent", `12.5e-3`, false},
		{"a huge integer rounds like ParseFloat", `123456789012345678901234567890`, false},
		{"the largest exact integer and one past it", `[9007199254740992, 9007199254740993]`, false},
		{"a number with hundreds of digits", "0." + strings.Repeat("9", 900), false},
		{"a leading zero is refused", `01`, true},
		{"a leading plus is refused", `+1`, true},
		{"a bare decimal point is refused", `.5`, true},
		{"a trailing decimal point is refused", `1.`, true},
		{"an empty exponent is refused", `1e`, true},
		{"an exponent sign without digits is refused", `1e+`, true},
		{"a lone minus is refused", `-`, true},
		{"hex is refused", `0x10`, true},
		{"Infinity is refused", `Infinity`, true},
		{"NaN is refused", `NaN`, true},
		{"an empty object", `{}`, false},
		{"an empty array", `[]`, false},
		{"empty containers with whitespace inside", "[{ \n},\t[ ]]", false},
		{"nested empty containers", `{"a":{},"b":[],"c":[{}]}`, false},
		{"a duplicate key's last value wins", `{"a":1,"b":2,"a":3}`, false},
		{"a duplicate key with a different type wins last", `{"a":{"x":1},"a":"s"}`, false},
		{"leading and trailing whitespace", " \t\r\n{\"a\" : [ 1 , true , null ] }\n\t ", false},
		{"literals", `[true,false,null]`, false},
		{"a top-level null", `null`, false},
		{"a top-level string", `"s"`, false},
		{"a truncated literal is refused", `tru`, true},
		{"a misspelt literal is refused", `nul1`, true},
		{"trailing garbage is refused", `{"a":1}x`, true},
		{"a second top-level value is refused", `1 2`, true},
		{"a trailing comma in an object is refused", `{"a":1,}`, true},
		{"a trailing comma in an array is refused", `[1,]`, true},
		{"a missing colon is refused", `{"a" 1}`, true},
		{"a non-string key is refused", `{1:2}`, true},
		{"a missing comma is refused", `[1 2]`, true},
		{"an unclosed object is refused", `{"a":1`, true},
		{"an unclosed array is refused", `[1`, true},
		{"a byte-order mark is refused", "\xef\xbb\xbf{}", true},
		{"empty input is refused", ``, true},
		{"whitespace only is refused", " \n", true},
		{"a vertical tab is not whitespace", "\v1", true},
		{"a NUL byte outside a string is refused", "1\x00", true},
		{"arrays nested to the bound are decoded", nested("[", "]", MaxDepth), false},
		{"arrays nested beyond the bound are refused", nested("[", "]", MaxDepth+1), true},
		{"objects nested beyond the bound are refused", nested(`{"a":`, "}", MaxDepth+1), true},
		{"mixed nesting beyond the bound is refused", strings.Repeat(`[{"a":`, MaxDepth/2) + "[1]" + strings.Repeat("}]", MaxDepth/2), true},
		{"an unclosed deep nesting is refused", strings.Repeat("[", MaxDepth+5), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if failed := agree(t, []byte(tc.in)); failed != tc.wantErr {
				t.Errorf("failed %v, want %v", failed, tc.wantErr)
			}
		})
	}
}

// Objects nested exactly MaxDepth deep, the deepest encoding/json accepts, are decoded.
func TestDecodeAcceptsExactlyMaxDepthObjects(t *testing.T) {
	in := strings.Repeat(`{"a":`, MaxDepth-1) + "{}" + strings.Repeat("}", MaxDepth-1)
	if agree(t, []byte(in)) {
		t.Fatal("refused nesting at the bound")
	}
}

func TestDecodePayloadsMatchEncodingJSON(t *testing.T) {
	for _, p := range payloadFiles(t) {
		t.Run(filepath.Base(p)+" decodes as encoding/json does", func(t *testing.T) {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if agree(t, raw) {
				t.Fatal("refused a real payload")
			}
		})
	}
}

// A string without escapes is a substring of the one copy of the input: decoding a document
// of many strings allocates per value box, not per key and per string.
func TestDecodeAllocatesNoStringPerKey(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 50 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"key%02d":"value number %02d"`, i, i)
	}
	b.WriteString("}")
	raw := []byte(b.String())
	n := testing.AllocsPerRun(50, func() {
		if _, err := Decode(raw); err != nil {
			t.Fatal(err)
		}
	})
	// One box per value, the input copy and the map as it grows: measured 60. encoding/json
	// also makes a string per key and per value, 100 more.
	if n > 50+12 {
		t.Errorf("%v allocations for 50 string members, want at most %v", n, 50+12)
	}
}

func payloadFiles(t testing.TB) []string {
	t.Helper()
	ps, err := filepath.Glob("../../testdata/payloads/*.json")
	if err != nil || len(ps) == 0 {
		t.Fatalf("no payloads: %v", err)
	}
	return ps
}

// FuzzDecodeMatchesEncodingJSON feeds everything the fuzzer finds to both decoders: they must
// fail together, and otherwise give identical values.
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	for _, p := range payloadFiles(f) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`"\ud83d\ude00"`, `"\ud83d"`, "\"a\xffb\"", `1e400`, `-0`, `1E+2`, `{"a":1,"a":2}`,
		" [1, \"x\\n\", {}] ", `[[[[]]]]`, "\xef\xbb\xbf{}", `{"a":1}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		agree(t, data)
	})
}

// benchInputs are a typical webhook body and a larger one of twelve events (~5.1 KB),
// the top of the usual range.
func benchInputs(b *testing.B) []struct {
	name string
	raw  []byte
} {
	one, err := os.ReadFile("../../testdata/payloads/encompass-loan-milestone.json")
	if err != nil {
		b.Fatal(err)
	}
	var many bytes.Buffer
	many.WriteString("[")
	for i, p := range payloadFiles(b) {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		for j := range 4 {
			if i+j > 0 {
				many.WriteString(",")
			}
			many.Write(raw)
		}
	}
	many.WriteString("]")
	return []struct {
		name string
		raw  []byte
	}{
		{"encompass-loan-milestone", one},
		{"twelve-events", many.Bytes()},
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.raw)))
			for b.Loop() {
				if _, err := Decode(in.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodingJSON(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.raw)))
			for b.Loop() {
				var v any
				if err := json.Unmarshal(in.raw, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
