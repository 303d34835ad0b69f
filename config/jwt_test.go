package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/security"
)

// A jwt endpoint's jwks_url is fetched under the egress rules http steps obey: the cloud
// metadata address is refused however the endpoint is written.
func TestJWTJWKSURLIsFetchedUnderTheEgressRules(t *testing.T) {
	for _, tc := range []struct{ name, server, partner string }{
		{"the metadata address is refused by default", "", ""},
		{"the metadata address is refused even where egress.allow names it", "egress: {allow: ['169.254.169.254']}\n", "egress: {allow: ['169.254.169.254']}\n"},
		{"a private address the partner's list leaves out is refused", "egress: {allow: ['10.0.0.0/8']}\n", "egress: {allow: ['idp.example.com']}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := "169.254.169.254"
			if strings.Contains(tc.partner, "idp.example.com") {
				host = "10.1.2.3"
			}
			path := writeConfig(t, map[string]string{
				"pushbackd.yaml": "listen: 127.0.0.1:0\n" + tc.server,
				"partners/a.yaml": "id: a\n" + tc.partner + `endpoints:
  - name: e
    saga: echo
    security:
      method: jwt
      jwks_url: https://` + host + `/jwks.json
      algorithms: [ES256]
      issuer: https://idp.example.com/
      audience: pushbackd
`})
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			route, ok := cfg.Lookup("a", "", "e")
			if !ok {
				t.Fatal("no endpoint a/e")
			}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(key)
			pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
			sec := route.Endpoint.Security.Resolved()
			sec.JWKSURL, sec.Keys = "", []security.Secret{security.NewSecret(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))}
			tok, err := security.SignJWT(sec, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			err = route.Endpoint.Verifier().Verify(&security.Request{Header: map[string][]string{"Authorization": {"Bearer " + tok}}})
			if err == nil || !strings.Contains(err.Error(), "egress") {
				t.Fatalf("got %v, want the egress rules' refusal", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestJWTConfigErrorsArePositioned(t *testing.T) {
	for _, tc := range []struct {
		name, security, want string
	}{
		{"an HMAC algorithm is an error at its list item", "{method: jwt, keys: [{file: k.pem}], algorithms: [ES256, HS256], issuer: i, audience: a}", "a.yaml:2:"},
		{"neither keys nor jwks_url is an error", "{method: jwt, algorithms: [ES256], issuer: i, audience: a}", "keys, jwks_url or secrets is required"},
		{"a jwks_url over http is an error", "{method: jwt, jwks_url: 'http://idp.example.com/k', algorithms: [ES256], issuer: i, audience: a}", "must be https"},
		{"algorithms written as text is an error", "{method: jwt, keys: [{file: k.pem}], algorithms: ES256, issuer: i, audience: a}", "a.yaml:2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
			path := writeConfig(t, map[string]string{
				"partners/k.pem":  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
				"partners/a.yaml": "id: a\nendpoints: [{name: e, saga: echo, security: " + tc.security + "}]\n",
			})
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			t.Logf("config error: %v", err)
		})
	}
}

// A jwt endpoint with secrets takes HS256 tokens signed with any of them; the token here
// is made by hand with crypto/hmac, not by the verifying library.
func TestJWTSecretsLoadAndVerifyHMACTokens(t *testing.T) {
	t.Setenv("JWT_SECRET_OLD", strings.Repeat("o", 32))
	path := writeConfig(t, map[string]string{
		"partners/a.yaml": `id: a
endpoints:
  - name: e
    saga: echo
    security:
      method: jwt
      secrets: [{value: "` + strings.Repeat("n", 32) + `"}, {env: JWT_SECRET_OLD}]
      algorithms: [HS256]
      issuer: https://idp.example.com/
      audience: pushbackd
`})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	route, ok := cfg.Lookup("a", "", "e")
	if !ok {
		t.Fatal("no endpoint a/e")
	}
	now := time.Now()
	sign := func(secret string) string {
		enc := base64.RawURLEncoding
		in := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
			enc.EncodeToString(fmt.Appendf(nil, `{"iss":"https://idp.example.com/","aud":"pushbackd","exp":%d}`, now.Add(time.Minute).Unix()))
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(in))
		return in + "." + enc.EncodeToString(m.Sum(nil))
	}
	for _, tc := range []struct {
		name, secret string
		ok           bool
	}{
		{"a token signed with the new secret is accepted", strings.Repeat("n", 32), true},
		{"a token signed with the old secret is accepted", strings.Repeat("o", 32), true},
		{"a token signed with another secret is refused", strings.Repeat("x", 32), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := route.Endpoint.Verifier().Verify(&security.Request{Header: map[string][]string{"Authorization": {"Bearer " + sign(tc.secret)}}, Now: now})
			if (err == nil) != tc.ok {
				t.Fatalf("verify: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
