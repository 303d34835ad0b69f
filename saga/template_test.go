package saga

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []segment
		err  string
	}{
		{"plain text is one literal", "hello", []segment{{lit: "hello"}}, ""},
		{"one expression alone", "${ a }", []segment{{expr: " a ", isExpr: true, offset: 2}}, ""},
		{"text around expressions", "x${a}y${b}", []segment{{lit: "x"}, {expr: "a", isExpr: true, offset: 3}, {lit: "y"}, {expr: "b", isExpr: true, offset: 8}}, ""},
		{"a map literal's braces stay inside", "${ {a: 1}.a }!", []segment{{expr: " {a: 1}.a ", isExpr: true, offset: 2}, {lit: "!"}}, ""},
		{"a brace inside a string literal stays inside", `${ "}" + '{' }`, []segment{{expr: ` "}" + '{' `, isExpr: true, offset: 2}}, ""},
		{"an escaped quote does not end the string", `${ "a\"}" }`, []segment{{expr: ` "a\"}" `, isExpr: true, offset: 2}}, ""},
		{"$${ is a literal ${", "$${ a }", []segment{{lit: "${ a }"}}, ""},
		{"a lone $ is text", "cost: $5 ${x}", []segment{{lit: "cost: $5 "}, {expr: "x", isExpr: true, offset: 11}}, ""},
		{"offsets count runes, not bytes", "é${x}", []segment{{lit: "é"}, {expr: "x", isExpr: true, offset: 3}}, ""},
		{"an unclosed ${ is an error", "a ${ b", nil, "${ without a closing } (template column 3)"},
		{"an unclosed string is an error", `${ "a }`, nil, "unterminated string literal"},
		{"an empty ${} is an error", "${  }", nil, "empty ${ }"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTemplate(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// renderSet runs a one-step saga that sets `v` from the YAML value src and returns it.
func renderSet(t *testing.T, src string, body any) any {
	t.Helper()
	s := mustParse(t, "tpl", "name: tpl\nsteps:\n  - name: s\n    set:\n      v: "+src+"\n")
	e, _, _ := testEngine(t)
	inv := invocation(s, body)
	inv.Settings = map[string]any{"crm_url": "http://crm.example", "n": 3}
	res := e.Run(context.Background(), inv)
	if res.Status != StatusSucceeded {
		t.Fatalf("run %s: %s", res.Status, res.Error)
	}
	return res.Vars["v"]
}

func TestInterpolation(t *testing.T) {
	body := map[string]any{
		"id":    "L-1",
		"count": 7,
		"ok":    true,
		"price": 1.5,
		"meta":  map[string]any{"a": "b"},
		"tags":  []any{"x", "y"},
	}
	tests := []struct {
		name string
		yaml string
		want any
	}{
		{"a lone expression keeps a number's type", `"${ body.count }"`, float64(7)},
		{"a lone expression keeps a bool", `"${ body.ok }"`, true},
		{"a lone expression keeps a map", `"${ body.meta }"`, map[string]any{"a": "b"}},
		{"a lone expression keeps a list", `"${ body.tags }"`, []any{"x", "y"}},
		{"a lone expression may compute", `"${ settings.n * 2 }"`, 6},
		{"a lone nil stays nil", `"${ body.missing }"`, nil},
		{"text around an expression makes text", `"loan ${ body.id }"`, "loan L-1"},
		{"numbers and bools print plainly inside text", `"${ body.count }/${ body.price }/${ body.ok }"`, "7/1.5/true"},
		{"maps and lists print as JSON inside text", `"m=${ body.meta } t=${ body.tags }"`, `m={"a":"b"} t=["x","y"]`},
		{"nil prints as nothing inside text", `"[${ body.missing }]"`, "[]"},
		{"a plain url template", `${ settings.crm_url }/tasks/${ body.id }`, "http://crm.example/tasks/L-1"},
		{"templates work inside nested maps and lists", `{a: {b: ["${ body.id }", "${ body.count }", plain]}, c: 1}`,
			map[string]any{"a": map[string]any{"b": []any{"L-1", float64(7), "plain"}}, "c": 1}},
		{"a constant map stays as written", `{a: 1, b: [true, "x"]}`, map[string]any{"a": 1, "b": []any{true, "x"}}},
		{"an escaped ${ stays literal", `"$${ body.id }"`, "${ body.id }"},
		{"a time prints as RFC 3339", `"at ${ run.received_at }"`, "at 2026-03-04T05:06:07Z"},
		{"request headers have lower-case names", `"${ request.headers['content-type'] }"`, "application/json"},
		{"hmac_sha256 gives hex", `"${ hmac_sha256('key', 'The quick brown fox jumps over the lazy dog') }"`,
			"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := renderSet(t, tc.yaml, body)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v (%T), want %#v (%T)", got, got, tc.want, tc.want)
			}
		})
	}

	t.Run("uuid gives a fresh id each call", func(t *testing.T) {
		got, _ := renderSet(t, `"${ uuid() } ${ uuid() }"`, body).(string)
		a, b, _ := strings.Cut(got, " ")
		if len(a) != 36 || a == b {
			t.Errorf("uuid() gave %q and %q", a, b)
		}
	})
}

func TestTheEnvironmentFollowsTheRequest(t *testing.T) {
	s := mustParse(t, "env", `
name: env
steps:
  - name: s
    set:
      method: ${ request.method }
      path: ${ request.path }
      accept: ${ request.headers.accept }
      q: ${ request.query.page }
      ip: ${ request.remote_ip }
      raw: ${ raw }
      partner: ${ partner.name }
      site: ${ site?.id ?? "none" }
      endpoint: ${ endpoint.name }
      run: ${ run.id }/${ run.attempt }
`)
	inv := invocation(s, map[string]any{"a": 1})
	inv.Request.Headers.Add("Accept", "text/plain")
	inv.Request.Headers.Add("Accept", "application/json")
	inv.Request.Query = map[string][]string{"page": {"2", "3"}}
	e, _, _ := testEngine(t)
	res := e.Run(context.Background(), inv)
	want := map[string]any{
		"method": "POST", "path": "/pushback/acme/encompass", "accept": "text/plain, application/json",
		"q": "2", "ip": "192.0.2.1", "raw": `{"a":1}`, "partner": "Acme Lending", "site": "none",
		"endpoint": "encompass", "run": "run-1/1",
	}
	if !reflect.DeepEqual(res.Vars, want) {
		t.Errorf("vars = %v\nwant   %v", res.Vars, want)
	}

	t.Run("site is set for site-scoped endpoints", func(t *testing.T) {
		inv.Site = &Ref{ID: "retail", Name: "Acme Retail"}
		res := e.Run(context.Background(), inv)
		if res.Vars["site"] != "retail" {
			t.Errorf("site = %v", res.Vars["site"])
		}
	})
}
