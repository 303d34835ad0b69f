package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
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
		{"neither keys nor jwks_url is an error", "{method: jwt, algorithms: [ES256], issuer: i, audience: a}", "keys or jwks_url is required"},
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
