package payload

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonValue(t *testing.T, src string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(src), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

const loanSchema = `{
  "type": "object",
  "required": ["eventId", "meta"],
  "properties": {
    "eventId": {"type": "string", "minLength": 1},
    "eventType": {"enum": ["Create", "Update", "milestone"]},
    "meta": {"$ref": "meta.json"}
  }
}`

const metaSchema = `{"type": "object", "required": ["resourceId"], "properties": {"resourceId": {"type": "string", "pattern": "^[0-9a-f-]{8,}$"}}}`

func TestCheckReportsPointersAndReasons(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "meta.json", metaSchema)
	s, err := Compile(writeFile(t, dir, "loan.json", loanSchema), "loan.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body any
		want []string // "pointer|part of the reason", in order
	}{
		{"a body that matches has no problems", jsonValue(t, `{"eventId":"e1","eventType":"Create","meta":{"resourceId":"10d191c3-c97b"}}`), nil},
		{"a missing property is reported at its object", jsonValue(t, `{"meta":{"resourceId":"10d191c3"}}`), []string{"|missing property 'eventId'"}},
		{"a value of the wrong type is reported at the value", jsonValue(t, `{"eventId":7,"meta":{"resourceId":"10d191c3"}}`), []string{"/eventId|got number, want string"}},
		{"a referenced file's rule is reported at the nested value", jsonValue(t, `{"eventId":"e","meta":{"resourceId":"NOT HEX"}}`), []string{"/meta/resourceId|does not match pattern"}},
		{"a value outside an enum is reported", jsonValue(t, `{"eventId":"e","eventType":"Delete","meta":{"resourceId":"10d191c3"}}`), []string{"/eventType|value must be one of"}},
		{"a form body is checked as an object of strings", map[string]any{"eventId": "e", "meta": "x"}, []string{"/meta|got string, want object"}},
		{"an empty body is checked as null", nil, []string{"|got null, want object"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Check(tc.body)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %v, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				ptr, reason, _ := strings.Cut(w, "|")
				if got[i].Pointer != ptr || !strings.Contains(got[i].Reason, reason) {
					t.Errorf("problem %d = %+v, want at %q a reason with %q", i, got[i], ptr, reason)
				}
			}
		})
	}
}

func TestCheckIsBounded(t *testing.T) {
	dir := t.TempDir()
	s, err := Compile(writeFile(t, dir, "s.json", `{"type":"array","items":{"type":"string","pattern":"^a$"}}`), "s.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("thousands of bad items give the first few problems", func(t *testing.T) {
		items := make([]any, MaxValues-1)
		for i := range items {
			items[i] = float64(i)
		}
		got := s.Check(items)
		if len(got) != MaxProblems || got[0].Pointer != "/0" || got[MaxProblems-1].Pointer != "/4" {
			t.Fatalf("problems %v, want the first %d", got, MaxProblems)
		}
	})
	t.Run("a body of more values than a check takes is refused without checking it", func(t *testing.T) {
		items := make([]any, MaxValues)
		for i := range items {
			items[i] = "a"
		}
		got := s.Check(items) // MaxValues items in an array: one value more than the limit
		if len(got) != 1 || got[0].Pointer != "" || !strings.Contains(got[0].Reason, "more than 20000 values") {
			t.Fatalf("problems %v", got)
		}
		if got := s.Check(items[1:]); got != nil {
			t.Fatalf("a body of exactly %d values: %v", MaxValues, got)
		}
	})
	t.Run("a long value quoted in a reason is cut", func(t *testing.T) {
		got := s.Check([]any{strings.Repeat("é", 10_000)})
		if len(got) != 1 || len(got[0].Reason) > MaxTextBytes+len("…") || !strings.HasSuffix(got[0].Reason, "…") {
			t.Fatalf("problem %+v is not bounded", got)
		}
	})
	t.Run("a long key in a pointer is cut", func(t *testing.T) {
		s, err := Compile(writeFile(t, dir, "o.json", `{"additionalProperties":{"type":"string"}}`), "o.json")
		if err != nil {
			t.Fatal(err)
		}
		got := s.Check(map[string]any{strings.Repeat("k/~", 1000): 1.0})
		if len(got) != 1 || len(got[0].Pointer) > MaxTextBytes+len("…") || !strings.HasPrefix(got[0].Pointer, "/k~1~0") {
			t.Fatalf("problem %+v", got)
		}
	})
}

func TestCompileErrorsSayWhere(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		file string
		src  string
		want string
	}{
		{"a JSON syntax error gives line and column", "syntax.json", "{\n  \"type\": \"object\",\n  \"required\": [\"a\" \"b\"]\n}", "schema syntax.json:3:20: invalid character"},
		{"a keyword of the wrong type names the keyword", "bad-type.json", `{"properties": {"a": {"type": 7}}}`, "schema bad-type.json: not a valid JSON Schema: at /properties/a/type: "},
		{"a reference to a missing file names it", "dangling.json", `{"$ref": "nowhere.json"}`, "nowhere.json"},
		{"a reference to a URL is not fetched", "remote.json", `{"$ref": "https://example.com/s.json"}`, "schema remote.json: "},
		{"a truncated file says where it ends", "short.json", "{\"type\":", "schema short.json:1:9: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(writeFile(t, dir, tc.file, tc.src), tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("a schema file over the limit is refused without reading it whole", func(t *testing.T) {
		if _, err := os.Stat("/dev/zero"); err != nil {
			t.Skip("no /dev/zero")
		}
		_, err := Compile("/dev/zero", "zero.json")
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Compile(/dev/zero) = %v", err)
		}
		big := writeFile(t, dir, "big.json", `{"description":"`+strings.Repeat("x", MaxFileBytes)+`"}`)
		if _, err := Compile(big, "big.json"); err == nil || !strings.Contains(err.Error(), "over the limit") {
			t.Fatalf("Compile(big) = %v", err)
		}
	})
}

// FuzzCheck validates arbitrary JSON bodies: Check never panics, and reports at most
// MaxProblems bounded problems, none for a body the schema accepts.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"eventId":"e","meta":{"resourceId":"10d191c3"}}`, `[]`, `null`, `{"meta":[1,{"a":"b"}]}`, `"x"`, `{"eventId":"","eventType":1}`} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(metaSchema), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "loan.json"), []byte(loanSchema), 0o600); err != nil {
		f.Fatal(err)
	}
	s, err := Compile(filepath.Join(dir, "loan.json"), "loan.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		got := s.Check(v)
		if len(got) > MaxProblems {
			t.Fatalf("%d problems", len(got))
		}
		for _, p := range got {
			if p.Reason == "" || len(p.Reason) > MaxTextBytes+3 || len(p.Pointer) > MaxTextBytes+3 {
				t.Fatalf("problem %+v", p)
			}
		}
	})
}

// The worst body a check takes: MaxValues-1 items of an array, every one failing. Run:
// go test -run '^$' -bench . -benchmem ./payload/
func BenchmarkCheckWorstBody(b *testing.B) {
	path := filepath.Join(b.TempDir(), "s.json")
	if err := os.WriteFile(path, []byte(`{"type":"array","items":{"type":"string"}}`), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := Compile(path, "s.json")
	if err != nil {
		b.Fatal(err)
	}
	var body any
	if err := json.Unmarshal([]byte("["+strings.Repeat("1,", MaxValues-2)+"1]"), &body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(s.Check(body)) != MaxProblems {
			b.Fatal("want problems")
		}
	}
}

// A 1 MiB body of half a million values at an endpoint with a schema: counted and refused.
func BenchmarkCheckRefusesAOneMiBArray(b *testing.B) {
	path := filepath.Join(b.TempDir(), "s.json")
	if err := os.WriteFile(path, []byte(`{"type":"array","items":{"type":"string"}}`), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := Compile(path, "s.json")
	if err != nil {
		b.Fatal(err)
	}
	var body any
	if err := json.Unmarshal([]byte("["+strings.Repeat("1,", 1<<19-1)+"1]"), &body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(s.Check(body)) != 1 {
			b.Fatal("want the refusal")
		}
	}
}

func TestAProblemSaysWhereInWords(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{Pointer: "", Reason: "missing property 'meta'"}, "at the root: missing property 'meta'"},
		{Problem{Pointer: "/meta/id", Reason: "got number, want string"}, "at /meta/id: got number, want string"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v reads %q, want %q", tc.p, got, tc.want)
		}
	}
}
