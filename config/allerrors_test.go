package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/yamlconf"
)

// DESIGN §3: validate tells every problem of a file at once. Inside one security block, a
// value that does not decode (a malformed duration) or a missing required key must not
// hide the block's other problems, which the method itself finds.
func TestEveryProblemOfASecurityBlockIsReportedAtOnce(t *testing.T) {
	type want struct {
		line int
		msg  string
	}
	block := func(lines ...string) string {
		return "id: acme\nendpoints:\n  - name: e\n    saga: echo\n    security:\n" + "      " + strings.Join(lines, "\n      ") + "\n"
	}
	cases := []struct {
		name string
		file string
		want []want
	}{
		{"a jwt block with a malformed leeway, no issuer and the none algorithm reports all three",
			block("method: jwt", "jwks_url: https://idp.example.com/jwks.json", "algorithms: [ES256, none]", "audience: a", "leeway: abc"),
			[]want{{10, `invalid duration "abc"`}, {6, "needs issuer"}, {8, "none is never accepted"}}},
		{"a signature block with a malformed tolerance and an unknown encoding reports both",
			block("method: signature", "secrets: [{value: s}]", "encoding: b32", "timestamp_header: X-Ts", "tolerance: 5x"),
			[]want{{10, `invalid duration "5x"`}, {8, "encoding must be base64 or hex"}}},
		{"an aws_sigv4 block with a negative tolerance and no service reports both",
			block("method: aws_sigv4", "region: us-east-1", "credentials: [{access_key_id: AKID1, secret_access_key: {value: s}}]", "tolerance: -1m"),
			[]want{{6, "needs service"}, {9, `"-1m" must not be negative`}}},
		{"an oauth2 block without clients still has its token_ttl checked",
			block("method: oauth2", "token_ttl: 48h"),
			[]want{{6, "needs clients"}, {7, "token_ttl must be between"}}},
		{"a signature block without secrets still has its encoding checked",
			block("method: signature", "encoding: b32"),
			[]want{{6, "needs secrets"}, {7, "encoding must be base64 or hex"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, map[string]string{"partners/acme.yaml": tc.file})
			_, err := Load(path)
			if err == nil {
				t.Fatal("the config loaded")
			}
			file := filepath.Join(filepath.Dir(path), "partners/acme.yaml")
			errs := yamlconf.AsErrors(err)
			for _, w := range tc.want {
				found := false
				for _, e := range errs {
					if e.File == file && e.Line == w.line && strings.Contains(e.Message, w.msg) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing %d: ...%s...", w.line, w.msg)
				}
			}
			if len(errs) != len(tc.want) {
				t.Errorf("%d errors, want %d (no repeats)", len(errs), len(tc.want))
			}
			if t.Failed() {
				t.Logf("got:\n%v", err)
			}
		})
	}
}
