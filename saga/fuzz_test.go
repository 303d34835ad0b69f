package saga

import (
	"strings"
	"testing"
	"unicode/utf8"
)

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
