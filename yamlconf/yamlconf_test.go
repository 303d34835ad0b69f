package yamlconf

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	Pos  Pos
	Name string `yaml:"name,required"`
	Port int    `yaml:"port"`
}

type outer struct {
	Listen  string            `yaml:"listen"`
	Timeout time.Duration     `yaml:"timeout"`
	Items   []inner           `yaml:"items"`
	Extra   map[string]any    `yaml:"extra"`
	Labels  map[string]string `yaml:"labels"`
	On      bool              `yaml:"on"`
}

func TestDecodeReportsEveryProblemWithPosition(t *testing.T) {
	src := `listen: 127.0.0.1:8080
timeout: 5 seconds
items:
  - name: a
    port: eighty
  - port: 81
    colour: red
extra: {a: 1, b: [x, 2.5, true]}
on: maybe
lisen: x
`
	var o outer
	errs := DecodeFile("f.yaml", []byte(src), &o)
	want := []string{
		`f.yaml:2:10: invalid duration "5 seconds"`,
		`f.yaml:5:11: expected an integer, got a string`,
		`f.yaml:7:5: unknown key "colour"`,
		`f.yaml:6:5: missing required key "name"`,
		`f.yaml:9:5: expected true or false, got a string`,
		`f.yaml:10:1: unknown key "lisen"`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i].Error(), w)
		}
	}
	if o.Listen != "127.0.0.1:8080" || o.Items[0].Name != "a" || o.Items[1].Port != 81 {
		t.Errorf("decoded values wrong: %+v", o)
	}
	if o.Items[1].Pos != (Pos{Line: 6, Column: 5}) {
		t.Errorf("item position = %+v", o.Items[1].Pos)
	}
	if b := o.Extra["b"].([]any); b[0] != "x" || b[1] != 2.5 || b[2] != true || o.Extra["a"] != 1 {
		t.Errorf("extra decoded as %#v", o.Extra)
	}
}

func TestSyntaxErrorIsPositioned(t *testing.T) {
	errs := DecodeFile("bad.yaml", []byte("a: 1\nb: [1, 2\n"), &outer{})
	if len(errs) != 1 || errs[0].Line == 0 || errs[0].File != "bad.yaml" {
		t.Fatalf("got %v", errs)
	}
}

func TestDuplicateKeyIsAnError(t *testing.T) {
	errs := DecodeFile("dup.yaml", []byte("listen: a\nlisten: b\n"), &outer{})
	if len(errs) != 1 || errs[0].Line != 2 {
		t.Fatalf("got %v", errs)
	}
}

func TestEmptyFileIsAnError(t *testing.T) {
	errs := DecodeFile("empty.yaml", []byte("# nothing\n"), &outer{})
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "empty") {
		t.Fatalf("got %v", errs)
	}
}

func TestAnchorsAndAliasesResolve(t *testing.T) {
	var o outer
	errs := DecodeFile("a.yaml", []byte("labels: &l {a: b}\nextra: *l\n"), &o)
	if len(errs) != 0 || o.Extra["a"] != "b" {
		t.Fatalf("errs %v, extra %v", errs, o.Extra)
	}
}

func TestANullOrBareTagDocumentIsEmpty(t *testing.T) {
	for _, src := range []string{"null\n", "~\n", "!0000\n", "--- !!map\n"} {
		errs := DecodeFile("n.yaml", []byte(src), &outer{})
		if len(errs) != 1 || !strings.Contains(errs[0].Message, "empty") {
			t.Errorf("%q: got %v", src, errs)
		}
	}
}

// A reused decoder must not carry errors or anchors from one file into the next.
func TestResetStartsAFreshFile(t *testing.T) {
	d := NewDecoder("a.yaml")
	n, _ := Parse("a.yaml", []byte("labels: &l {a: b}\nlisen: x\n"))
	d.Decode(n, &outer{})
	first := d.Errors()
	d.Reset("b.yaml")
	n, _ = Parse("b.yaml", []byte("extra: *l\non: maybe\n"))
	var o outer
	d.Decode(n, &o)
	second := d.Errors()
	if len(first) != 1 || first[0].File != "a.yaml" || !strings.Contains(first[0].Message, `unknown key "lisen"`) {
		t.Errorf("first file's errors changed: %v", first)
	}
	if len(second) != 2 || second[0].File != "b.yaml" || !strings.Contains(second[0].Message, "unknown alias *l") || second[1].Line != 2 {
		t.Errorf("second file's errors: %v", second)
	}
}

// A null item in a list of structs held by pointer would reach validation as a nil pointer;
// it is an error where it is written, and the item stays nil.
func TestNullItemOfAStructListIsAnError(t *testing.T) {
	var o struct {
		Items []*inner `yaml:"items"`
	}
	errs := DecodeFile("f.yaml", []byte("items:\n  - name: a\n  -\n  - null\n  - *nope\n"), &o)
	want := []string{
		`f.yaml:3:4: expected a mapping, got nothing (null)`,
		`f.yaml:4:5: expected a mapping, got nothing (null)`,
		`f.yaml:5:5: unknown alias *nope`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if got := errs[i].Error(); got != w {
			t.Errorf("error %d = %q, want %q", i, got, w)
		}
	}
	if len(o.Items) != 4 || o.Items[0] == nil || o.Items[0].Name != "a" || o.Items[1] != nil {
		t.Errorf("items = %+v", o.Items)
	}
}
