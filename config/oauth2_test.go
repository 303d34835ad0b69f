package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

func TestOAuth2ClientsLoadAsIDSecretPairs(t *testing.T) {
	path := writeConfig(t, map[string]string{"partners/acme.yaml": `id: acme
endpoints:
  - name: e
    saga: echo
    security:
      method: oauth2
      clients:
        - {id: maxwell, secret: {value: one}}
        - {id: maxwell, secret: {value: two}}
      token_ttl: 15m
`})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	route, _ := cfg.Lookup("acme", "", "e")
	sec := route.Endpoint.Security.Resolved()
	if route.Endpoint.Verifier().Method() != security.OAuth2 || sec.TokenTTL.String() != "15m0s" ||
		strings.Join(sec.SecretIDs, ",") != "maxwell,maxwell" || string(sec.Secrets[1].Reveal()) != "two" {
		t.Fatalf("loaded as %+v", sec)
	}
}

func TestBadOAuth2ConfigsReportFileLineColumnAndMessage(t *testing.T) {
	block := func(rest string) string {
		return "id: acme\nendpoints:\n  - name: e\n    saga: echo\n    security:\n      method: oauth2\n" + rest
	}
	cases := []struct {
		name      string
		file      string
		line, col int
		msg       string
	}{
		{"a client without its secret is reported at the entry", block("      clients:\n        - {id: maxwell}\n"), 8, 11, "need both id and secret"},
		{"a client id with a space is reported at the entry", block("      clients:\n        - {id: max well, secret: {value: s}}\n"), 8, 11, "id must be 1 to 64"},
		{"a token_ttl over 24h is reported at the key", block("      clients:\n        - {id: m, secret: {value: s}}\n      token_ttl: 48h\n"), 9, 18, "token_ttl must be between 1s and 24h"},
		{"no clients is reported at the block", block("      token_ttl: 1h\n"), 6, 7, "clients"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, map[string]string{"partners/acme.yaml": tc.file})
			_, err := Load(path)
			if err == nil {
				t.Fatal("the config loaded")
			}
			want := filepath.Join(filepath.Dir(path), "partners/acme.yaml")
			for _, e := range yamlconf.AsErrors(err) {
				if e.File == want && e.Line == tc.line && e.Column == tc.col && strings.Contains(e.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("want %d:%d: ...%s...; got\n%v", tc.line, tc.col, tc.msg, err)
		})
	}
}
