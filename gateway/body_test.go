package gateway

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseBodyByContentType(t *testing.T) {
	cases := []struct {
		name        string
		contentType string
		raw         string
		want        any
		err         string
	}{
		{"JSON object", "application/json", `{"a":[1,"x",true,null]}`, map[string]any{"a": []any{1.0, "x", true, nil}}, ""},
		{"JSON with charset", "application/json; charset=utf-8", `"ü"`, "ü", ""},
		{"vendor JSON", "application/vnd.encompass+json", `{"ok":1}`, map[string]any{"ok": 1.0}, ""},
		{"empty JSON body is nil", "application/json", "  \n", nil, ""},
		{"truncated JSON", "application/json", `{"a":`, nil, "invalid JSON: unexpected end of input"},
		{"JSON syntax error says where", "application/json", `{"a" 1}`, nil, "at offset"},
		{"two JSON values", "application/json", `{}{}`, nil, "unexpected data after the top-level value"},
		{"form with one and several values", "application/x-www-form-urlencoded", "a=1&b=2&b=3&c=%C3%BC", map[string]any{"a": "1", "b": []any{"2", "3"}, "c": "ü"}, ""},
		{"form with a bad escape", "application/x-www-form-urlencoded", "a=%zz", nil, "invalid form body"},
		{"XML with attributes, repeats and text", "text/xml", `<Loan id="7"><Status>Approved</Status><Fee>1</Fee><Fee>2</Fee><Note lang="en">hi</Note></Loan>`,
			map[string]any{"Loan": map[string]any{"@id": "7", "Status": "Approved", "Fee": []any{"1", "2"}, "Note": map[string]any{"@lang": "en", "#text": "hi"}}}, ""},
		{"XML with a prolog", "application/xml", "<?xml version=\"1.0\"?>\n<a>1</a>", map[string]any{"a": "1"}, ""},
		{"mismatched XML tags", "application/xml", `<a><b></a>`, nil, "invalid XML"},
		{"two XML roots", "application/xml", `<a/><b/>`, nil, "more than one root"},
		{"XML nested too deep", "application/xml", strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100), nil, "nested deeper"},
		{"plain text stays text", "text/plain", "hello", "hello", ""},
		{"no content type is text", "", `{"not":"parsed"}`, `{"not":"parsed"}`, ""},
		{"a garbled content type is text", ";;;", "x", "x", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBody(tc.contentType, []byte(tc.raw))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func FuzzParseBody(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"eventId":"1","meta":{"resourceId":"x"}}`},
		{"application/x-www-form-urlencoded", "a=1&b=%20"},
		{"text/xml", `<a x="1"><b>t</b><b/></a>`},
		{"text/plain", "hi"},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, contentType string, raw []byte) {
		v, err := parseBody(contentType, raw)
		if err != nil && v != nil {
			t.Fatalf("a parse error came with a value: %v", v)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

func TestCommonContentTypesSkipTheParserWithTheSameAnswer(t *testing.T) {
	for _, ct := range []string{"", "text/plain", "application/json", "application/x-www-form-urlencoded"} {
		t.Run(ct, func(t *testing.T) {
			if got, want := kindOf(ct), kindOfParsed(ct); got != want {
				t.Errorf("kindOf(%q) = %v, the parser says %v", ct, got, want)
			}
			if n := testing.AllocsPerRun(100, func() { kindOf(ct) }); n != 0 {
				t.Errorf("%v allocations, want 0", n)
			}
		})
	}
}
