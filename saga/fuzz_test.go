package saga

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pushbackd/pushbackd/internal/hostileyaml"
)

// FuzzParse feeds arbitrary bytes to the saga loader. The loader reads files an admin (or
// the admin API) hands it, so whatever the bytes it must not panic, must give either a saga
// or errors (a half-compiled saga must never run), and every error must point somewhere an
// editor can jump to. The committed corpus under testdata/fuzz/FuzzParse holds the shipped
// sagas and the bad fixtures, renamed to "fuzz" so they get past the file-name check.
//
// The hostile YAML seeds (alias cycles, billion laughs, deep nesting, wide mappings) keep the
// parsing limits in the fuzzer's corpus.
func FuzzParse(f *testing.F) {
	f.Add([]byte("name: fuzz\nsteps:\n  - name: a\n    respond: {status: 200}\n"))
	for _, s := range hostileyaml.Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		s, errs := Parse("fuzz.yaml", src)
		if (s == nil) == (len(errs) == 0) {
			t.Fatalf("Parse gave saga %v and %d errors: want exactly one of them", s != nil, len(errs))
		}
		for _, e := range errs {
			if e.Line < 1 || e.Column < 1 || strings.TrimSpace(e.Message) == "" || e.File != "fuzz.yaml" {
				t.Errorf("unusable error %#v", e)
			}
		}
		if s == nil {
			return
		}
		if s.Name != "fuzz" || len(s.Steps) == 0 || len(s.Version) != 12 || !bytes.Equal(s.Source, src) {
			t.Fatalf("saga name %q, %d steps, version %q, source kept %v", s.Name, len(s.Steps), s.Version, bytes.Equal(s.Source, src))
		}
		for _, st := range s.Steps {
			if st.Action == nil || !stepNameRE.MatchString(st.Name) || st.Retry.Attempts < 1 {
				t.Fatalf("step %q compiled with action %v, %d attempts", st.Name, st.Action, st.Retry.Attempts)
			}
		}
	})
}

// FuzzParseTemplate checks that the template splitter never panics, that its segments put
// back together give the input, and that the expression offsets point at the sources.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{
		"", "plain", "${ a }", "x${a}y", "${ {a: 1}.a }", `${ "}" }`, `${ 'a\'}' }`, "$${ a }",
		"${", "${ a", "$${", "${ `}` }", "é${x}ü", "${}", "${ {{}} }",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		segs, err := parseTemplate(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, seg := range segs {
			if seg.isExpr {
				if strings.TrimSpace(seg.expr) == "" {
					t.Fatalf("empty expression accepted in %q", s)
				}
				if utf8.ValidString(s) {
					runes := []rune(s)
					if seg.offset < 2 || seg.offset > len(runes) || string(runes[seg.offset-2:seg.offset]) != "${" {
						t.Fatalf("offset %d does not follow ${ in %q", seg.offset, s)
					}
				}
				b.WriteString("${" + seg.expr + "}")
				continue
			}
			b.WriteString(strings.ReplaceAll(seg.lit, "${", "$${"))
		}
		if b.String() != s {
			t.Fatalf("segments of %q put back together give %q", s, b.String())
		}
	})
}
