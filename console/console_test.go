package console

import (
	"strings"
	"testing"
	"time"
)

func TestDiffLines(t *testing.T) {
	for _, tc := range []struct {
		name, a, b, want string
	}{
		{"equal texts are all context", "a\nb", "a\nb", " a| b"},
		{"a changed line is removed then added", "a\nb\nc", "a\nB\nc", " a|-b|+B| c"},
		{"an added line keeps its neighbours", "a\nc", "a\nb\nc", " a|+b| c"},
		{"a removed line keeps its neighbours", "a\nb\nc", "a\nc", " a|-b| c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, l := range diffLines(tc.a, tc.b) {
				got = append(got, l.Op+l.Text)
			}
			if strings.Join(got, "|") != tc.want {
				t.Errorf("diff %q → %q: %q, want %q", tc.a, tc.b, strings.Join(got, "|"), tc.want)
			}
		})
	}
	t.Run("two large unrelated texts are diffed without a quadratic table", func(t *testing.T) {
		var a, b strings.Builder
		for i := range 50_000 { // 2.5e9 cells if aligned line by line
			a.WriteString("a" + strings.Repeat("x", i%7) + "\n")
			b.WriteString("b" + strings.Repeat("y", i%5) + "\n")
		}
		start := time.Now()
		lines := diffLines(a.String(), b.String())
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %v", took)
		}
		if len(lines) != 100_001 {
			t.Errorf("%d lines, want every line of both once (100001)", len(lines))
		}
	})
}

func TestPrettyBody(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body, want string
	}{
		{"JSON is indented", "application/json; charset=utf-8", `{"a":[1,2]}`, "{\n  \"a\": [\n    1,\n    2\n  ]\n}"},
		{"XML is indented", "application/xml", `<a><b>1</b></a>`, "<a>\n  <b>1</b>\n</a>"},
		{"a form is one field a line, sorted", "application/x-www-form-urlencoded", "b=2&a=1&a=3", "a = 1\na = 3\nb = 2\n"},
		{"broken JSON is shown as received", "application/json", `{"a":`, `{"a":`},
		{"broken XML is shown as received", "text/xml", `<a><b></a>`, `<a><b></a>`},
		{"other types are shown as received", "text/plain", "hi", "hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := prettyBody(tc.contentType, tc.body); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzPrettyBody(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `<a x="1"><b/></a>`, "a=1&b=%zz", `<!DOCTYPE x [<!ENTITY y "z">]><x>&y;</x>`} {
		f.Add("application/json", s)
		f.Add("application/xml", s)
		f.Add("application/x-www-form-urlencoded", s)
	}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		out := prettyBody(contentType, body)
		if len(out) > 16*len(body)+64 {
			t.Errorf("a %d-byte body grew to %d bytes", len(body), len(out))
		}
	})
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP x
pushbackd_queue_depth 7
pushbackd_runs_total{saga="a",status="failed"} 2
`))
	if m.queueDepth != 7 {
		t.Errorf("queue depth %v, want 7", m.queueDepth)
	}
}
