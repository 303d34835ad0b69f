package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushbackd/pushbackd/security"
	"github.com/pushbackd/pushbackd/yamlconf"
)

func TestSigV4CredentialsLoadAsKeyPairs(t *testing.T) {
	path := writeConfig(t, map[string]string{"partners/acme.yaml": `id: acme
endpoints:
  - name: e
    saga: echo
    security:
      method: aws_sigv4
      region: us-east-1
      service: pushbackd
      credentials:
        - {access_key_id: AKIDONE, secret_access_key: {value: one}}
        - {access_key_id: AKIDTWO, secret_access_key: {value: two}}
`})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	route, _ := cfg.Lookup("acme", "", "e")
	sec := route.Endpoint.Security.Resolved()
	if route.Endpoint.Verifier().Method() != security.AWSSigV4 || sec.Region != "us-east-1" || sec.Service != "pushbackd" ||
		strings.Join(sec.SecretIDs, ",") != "AKIDONE,AKIDTWO" || len(sec.Secrets) != 2 || string(sec.Secrets[1].Reveal()) != "two" {
		t.Fatalf("loaded as %+v", sec)
	}
}

func TestBadSigV4ConfigsReportFileLineColumnAndMessage(t *testing.T) {
	block := func(creds string) string {
		return "id: acme\nendpoints:\n  - name: e\n    saga: echo\n    security:\n      method: aws_sigv4\n      region: us-east-1\n      service: pushbackd\n      credentials:\n" + creds
	}
	cases := []struct {
		name      string
		file      string
		line, col int
		msg       string
	}{
		{"a credential without its secret is reported at the entry", block("        - {access_key_id: AKID1}\n"), 10, 11, "need both access_key_id and secret_access_key"},
		{"a credential with an unknown key is reported at the key", block("        - {access_key_id: AKID1, secret_access_key: {value: s}, session_token: x}\n"), 10, 65, `unknown key "session_token"`},
		{"an access key id with a slash is reported at the entry", block("        - {access_key_id: AKID/1, secret_access_key: {value: s}}\n"), 10, 11, "access_key_id must be 1 to 128 letters and digits"},
		{"a missing region is reported at the block", strings.Replace(block("        - {access_key_id: AKID1, secret_access_key: {value: s}}\n"), "      region: us-east-1\n", "", 1), 6, 7, "needs region"},
		{"a region with a slash is reported at the region", strings.Replace(block("        - {access_key_id: AKID1, secret_access_key: {value: s}}\n"), "us-east-1", "us/east", 1), 7, 15, "region must be"},
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
