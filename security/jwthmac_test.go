package security

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// hmacJWT signs a token by hand with crypto/hmac (RFC 7515 §A.1's steps), not with the
// library that verifies, so a misreading shared by both cannot make these tests pass.
func hmacJWT(t testing.TB, alg string, secret []byte, claims map[string]any) string {
	t.Helper()
	hashes := map[string]func() hash.Hash{"HS256": sha256.New, "HS384": sha512.New384, "HS512": sha512.New}
	h, err := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	newHash := hashes[alg]
	if newHash == nil {
		newHash = sha256.New // an alg this helper does not know: sign as HS256 anyway
	}
	mac := hmac.New(newHash, secret)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

func hmacClaims(now time.Time) map[string]any {
	return map[string]any{"iss": jwtIssuer, "aud": jwtAudience, "sub": "acme",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
}

const (
	hmacSecret1 = "first-shared-secret-of-32-bytes-or-more-0123456789abcdef-0123456789"
	hmacSecret2 = "second-shared-secret-for-rotation-0123456789abcdef-0123456789abcdef"
)

func TestJWTWithSecretsVerifiesHMACTokens(t *testing.T) {
	f := newJWTFixture(t)
	rsaPEM := pubPEM(t, &f.rsa.PublicKey)
	hmacOnly := Config{Method: JWT, Secrets: []Secret{NewSecret(hmacSecret1), NewSecret(hmacSecret2)},
		Algorithms: []string{"HS256", "HS384", "HS512"}, Issuer: jwtIssuer, Audience: jwtAudience}
	both := Config{Method: JWT, Keys: []Secret{NewSecret(rsaPEM)}, Secrets: []Secret{NewSecret(hmacSecret1)},
		Algorithms: []string{"RS256", "HS256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	rsaOnly := Config{Method: JWT, Keys: []Secret{NewSecret(rsaPEM)},
		Algorithms: []string{"RS256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	now := testNow
	for _, tc := range []struct {
		name string
		cfg  Config
		tok  string
		want Reason
	}{
		{"an HS256 token signed with the first secret is accepted", hmacOnly, hmacJWT(t, "HS256", []byte(hmacSecret1), hmacClaims(now)), ""},
		{"an HS256 token signed with the second secret is accepted (rotation)", hmacOnly, hmacJWT(t, "HS256", []byte(hmacSecret2), hmacClaims(now)), ""},
		{"an HS384 token is accepted", hmacOnly, hmacJWT(t, "HS384", []byte(hmacSecret1), hmacClaims(now)), ""},
		{"an HS512 token is accepted", hmacOnly, hmacJWT(t, "HS512", []byte(hmacSecret2), hmacClaims(now)), ""},
		{"a token signed with another secret is refused", hmacOnly, hmacJWT(t, "HS256", []byte(strings.Repeat("x", 64)), hmacClaims(now)), ReasonMismatch},
		{"an expired HMAC token is refused as expired", hmacOnly, hmacJWT(t, "HS256", []byte(hmacSecret1), hmacClaims(now.Add(-time.Hour))), ReasonExpired},
		{"an HMAC token from the future is refused as expired", hmacOnly, hmacJWT(t, "HS256", []byte(hmacSecret1), hmacClaims(now.Add(time.Hour))), ReasonExpired},
		{"an HMAC token of another issuer is refused", hmacOnly, hmacJWT(t, "HS256", []byte(hmacSecret1), map[string]any{"iss": "evil", "aud": jwtAudience, "exp": now.Add(time.Minute).Unix()}), ReasonMismatch},
		{"an RS256 endpoint refuses an HS256 token signed with its public key (alg confusion)", rsaOnly, hmacJWT(t, "HS256", []byte(rsaPEM), hmacClaims(now)), ReasonMismatch},
		{"an endpoint with keys and secrets refuses an HS256 token signed with its public key", both, hmacJWT(t, "HS256", []byte(rsaPEM), hmacClaims(now)), ReasonMismatch},
		{"an endpoint with keys and secrets accepts an HS256 token signed with its secret", both, hmacJWT(t, "HS256", []byte(hmacSecret1), hmacClaims(now)), ""},
		{"an endpoint with keys and secrets refuses an HS384 token it does not pin", both, hmacJWT(t, "HS384", []byte(hmacSecret1), hmacClaims(now)), ReasonMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			assertJWTVerdict(t, v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tc.tok), Now: now}), tc.want)
		})
	}
	t.Run("an endpoint with keys and secrets still accepts its RS256 tokens", func(t *testing.T) {
		v, err := New(both)
		if err != nil {
			t.Fatal(err)
		}
		tok := joseToken(t, "RS256", f.rsa, "", goodClaims(now))
		assertJWTVerdict(t, v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tok), Now: now}), "")
	})
	t.Run("Check.Config gives back keys and secrets apart", func(t *testing.T) {
		c, err := Compile(both, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := c.Config()
		if len(got.Keys) != 1 || len(got.Secrets) != 1 || string(got.Keys[0].b) != rsaPEM || string(got.Secrets[0].b) != hmacSecret1 {
			t.Errorf("keys %d, secrets %d: not split where they were", len(got.Keys), len(got.Secrets))
		}
	})
}

func TestJWTNeverMixesPublicKeysAndHMACSecrets(t *testing.T) {
	f := newJWTFixture(t)
	ecPEM := pubPEM(t, &f.ec.PublicKey)
	base := func(edit func(*Config)) Config {
		c := Config{Method: JWT, Secrets: []Secret{NewSecret(hmacSecret1)}, Algorithms: []string{"HS256"}, Issuer: jwtIssuer, Audience: jwtAudience}
		edit(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string
		want string
	}{
		{"HS256 with public keys and no secrets is refused", base(func(c *Config) { c.Secrets, c.Keys = nil, []Secret{NewSecret(ecPEM)} }), "algorithms", "needs secrets"},
		{"secrets without an HS algorithm are refused", base(func(c *Config) { c.Algorithms = []string{"ES256"} }), "secrets", "must name HS256"},
		{"an asymmetric algorithm with secrets only is refused", base(func(c *Config) { c.Algorithms = []string{"HS256", "RS256"} }), "algorithms", "needs the identity provider's public keys"},
		{"public keys with only HS algorithms are refused", base(func(c *Config) { c.Keys = []Secret{NewSecret(ecPEM)} }), "algorithms", "must name an asymmetric algorithm"},
		{"a public key given as a secret is refused", base(func(c *Config) { c.Secrets = []Secret{NewSecret(ecPEM)} }), "secrets", "is a public key"},
		{"a JWK given as a secret is refused", base(func(c *Config) { c.Secrets = []Secret{NewSecret(jwksDoc(t, map[string]any{"k": &f.ec.PublicKey}))} }), "secrets", "is a public key"},
		{"a secret shorter than the hash is refused", base(func(c *Config) { c.Secrets = []Secret{NewSecret("short")} }), "secrets", "needs at least 32"},
		{"HS512 needs a 64-byte secret", base(func(c *Config) {
			c.Algorithms, c.Secrets = []string{"HS512"}, []Secret{NewSecret(strings.Repeat("s", 40))}
		}), "secrets", "needs at least 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			assertConfigError(t, err, tc.key, tc.want)
		})
	}
}

// Sign makes an HMAC endpoint's token from its first secret; go-jose, not the library that
// signed, verifies it.
func TestJWTSignMakesHMACTokensAnIndependentVerifierAccepts(t *testing.T) {
	cfg := Config{Method: JWT, Secrets: []Secret{NewSecret(hmacSecret1), NewSecret(hmacSecret2)},
		Algorithms: []string{"HS384"}, Issuer: jwtIssuer, Audience: jwtAudience}
	h, _, err := Sign(cfg, nil, "", testNow)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("Authorization %q", h.Get("Authorization"))
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.HS384})
	if err != nil {
		t.Fatal(err)
	}
	var c josejwt.Claims
	if err := tok.Claims([]byte(hmacSecret1), &c); err != nil {
		t.Fatalf("go-jose refuses the token: %v", err)
	}
	if err := c.ValidateWithLeeway(josejwt.Expected{Issuer: jwtIssuer, AnyAudience: josejwt.Audience{jwtAudience}, Time: testNow}, 0); err != nil {
		t.Fatalf("claims: %v", err)
	}
	v, _ := New(cfg)
	assertJWTVerdict(t, v.Verify(&Request{Header: h, Now: testNow.Add(time.Minute)}), "")
	t.Run("an endpoint with public keys only still cannot sign", func(t *testing.T) {
		if _, _, err := Sign(jwtConfig(t), nil, "", testNow); err == nil {
			t.Fatal("signed without a secret")
		}
	})
}
