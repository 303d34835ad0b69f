package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// same fails unless AppendValue and json.Marshal agree on v, both in output and in
// whether it can be encoded at all.
func same(t testing.TB, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	prefix := []byte("prefix:")
	got, err := AppendValue(append([]byte(nil), prefix...), v)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%#v: error %v, encoding/json says %v", v, err, wantErr)
	}
	if err != nil {
		if !bytes.Equal(got, prefix) {
			t.Fatalf("%#v: a failed append changed dst to %q", v, got)
		}
		return
	}
	if !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("%#v:\n got %s\nwant %s", v, got[len(prefix):], want)
	}
}

func TestAppendValueMatchesMarshal(t *testing.T) {
	for _, v := range []any{
		nil, true, false, "", "plain", 0.0, -0.0, 1.0, -12.5, 123456789.0, 1e20, 1e21, 1e-6, 1e-7, 5e-324,
		math.MaxFloat64, 0.1 + 0.2, 3, int64(-7),
		"quote \" backslash \\ slash / <tag> & amp", "\x00\x01\x08\x0c\n\r\t\x1f\x7f", "\u2028 \u2029 é ü 日本 🙂",
		"bad utf8 \xff\xfe end", "\xed\xa0\x80 surrogate half", string([]byte{0xe2, 0x82}),
		map[string]any{}, map[string]any{"b": 1.0, "a": []any{"x", nil, map[string]any{"z<": true}}, "": ""},
		[]any{}, []any{1.0, "2", []any{}}, map[string]any(nil), []any(nil),
		// Types the fast path leaves to encoding/json, among them.
		map[string]string{"k": "v", "<": "\xff"}, map[string]string{}, map[string]string(nil), []string{"a"}, time.Date(2026, 11, 22, 1, 2, 3, 4, time.UTC), time.Second,
		struct{ A int }{1}, json.Number("12"), json.Number(""), json.Number("true"), uint8(3), float32(0.1),
		// Values encoding/json refuses.
		math.NaN(), math.Inf(1), map[string]any{"x": math.Inf(-1)}, []any{1.0, make(chan int)},
	} {
		same(t, v)
	}
}

// FuzzAppendValueMatchesMarshal feeds every JSON document the fuzzer finds through both
// encoders, as a parsed value and as one string.
func FuzzAppendValueMatchesMarshal(f *testing.F) {
	payloads, _ := filepath.Glob("../../testdata/payloads/*.json")
	for _, p := range payloads {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{`{"a":[1,2.5e-9,"<&>",null,true]}`, `"\u2028\ud800"`, "\"\xff\"", `1e400`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		same(t, string(data))
		var v any
		if json.Unmarshal(data, &v) == nil {
			same(t, v)
		}
	})
}

func BenchmarkAppendValue(b *testing.B) {
	v := benchValue(b)
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = AppendValue(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	v := benchValue(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

// benchValue is the Encompass milestone payload, parsed as a request body is.
func benchValue(b *testing.B) any {
	raw, err := os.ReadFile("../../testdata/payloads/encompass-loan-milestone.json")
	if err != nil {
		b.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		b.Fatal(err)
	}
	return v
}
