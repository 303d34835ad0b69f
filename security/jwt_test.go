package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// The tokens here are made by go-jose, not by the library that verifies them, so a
// misreading shared by signer and verifier cannot make the tests pass.

const (
	jwtIssuer   = "https://idp.example.com/"
	jwtAudience = "pushbackd"
)

type jwtFixture struct {
	ec, ec2 *ecdsa.PrivateKey
	rsa     *rsa.PrivateKey
}

func newJWTFixture(t testing.TB) *jwtFixture {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtFixture{ec: ec, ec2: ec2, rsa: rk}
}

func pubPEM(t testing.TB, k any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// jwksDoc is a JWKS document of the public halves of keys, written by go-jose.
func jwksDoc(t testing.TB, keys map[string]any) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k, KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jwtConfig is a valid jwt Config over a fresh EC key.
func jwtConfig(t testing.TB) Config {
	f := newJWTFixture(t)
	return Config{Method: JWT, Keys: []Secret{NewSecret(pubPEM(t, &f.ec.PublicKey))},
		Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
}

// joseToken signs claims with go-jose.
func joseToken(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, c josejwt.Claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mustEC384(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func goodClaims(now time.Time) josejwt.Claims {
	return josejwt.Claims{Issuer: jwtIssuer, Audience: josejwt.Audience{jwtAudience}, Subject: "acme",
		Expiry: josejwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: josejwt.NewNumericDate(now),
		NotBefore: josejwt.NewNumericDate(now)}
}

func b64json(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestJWTVerifiesTokensFromAnIndependentSigner(t *testing.T) {
	f := newJWTFixture(t)
	now := testNow
	ecPEM, rsaPEM := pubPEM(t, &f.ec.PublicKey), pubPEM(t, &f.rsa.PublicKey)
	pemCfg := Config{Method: JWT, Keys: []Secret{NewSecret(ecPEM), NewSecret(rsaPEM)},
		Algorithms: []string{"ES256", "RS256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	jwksCfg := pemCfg
	jwksCfg.Keys = []Secret{NewSecret(jwksDoc(t, map[string]any{"ec-1": &f.ec.PublicKey, "ec-2": &f.ec2.PublicKey, "rsa-1": &f.rsa.PublicKey}))}

	claims := func(edit func(*josejwt.Claims)) josejwt.Claims {
		c := goodClaims(now)
		if edit != nil {
			edit(&c)
		}
		return c
	}
	good := joseToken(t, jose.ES256, f.ec, "", claims(nil))
	header := b64json(`{"alg":"ES256","typ":"JWT"}`)
	payload := strings.Split(good, ".")[1]

	cases := []struct {
		name  string
		cfg   Config
		token string
		want  Reason // "" = accepted
	}{
		{"an ES256 token of the configured PEM key is accepted", pemCfg, good, ""},
		{"an RS256 token of the configured PEM key is accepted", pemCfg, joseToken(t, jose.RS256, f.rsa, "", claims(nil)), ""},
		{"a token naming a JWKS kid is accepted", jwksCfg, joseToken(t, jose.ES256, f.ec2, "ec-2", claims(nil)), ""},
		{"a token without kid is tried against every JWKS key", jwksCfg, joseToken(t, jose.RS256, f.rsa, "", claims(nil)), ""},
		{"a token within the leeway of exp is accepted", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) {
			c.Expiry = josejwt.NewNumericDate(now.Add(-20 * time.Second))
		})), ""},
		{"a token of another key is refused", pemCfg, joseToken(t, jose.ES256, f.ec2, "", claims(nil)), ReasonMismatch},
		{"a token naming a kid whose key did not sign it is refused", jwksCfg, joseToken(t, jose.ES256, f.ec, "ec-2", claims(nil)), ReasonMismatch},
		{"a token naming an unknown kid is refused", jwksCfg, joseToken(t, jose.ES256, f.ec, "ec-9", claims(nil)), ReasonMismatch},
		{"an expired token is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) {
			c.Expiry = josejwt.NewNumericDate(now.Add(-time.Minute))
		})), ReasonExpired},
		{"a token whose nbf is beyond the leeway is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) {
			c.NotBefore = josejwt.NewNumericDate(now.Add(time.Minute))
		})), ReasonExpired},
		{"a token issued (iat) beyond the leeway in the future is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) {
			c.IssuedAt = josejwt.NewNumericDate(now.Add(10 * time.Minute))
		})), ReasonExpired},
		{"a token issued (iat) within the leeway in the future is accepted", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) {
			c.IssuedAt = josejwt.NewNumericDate(now.Add(20 * time.Second))
		})), ""},
		{"a token without exp is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) { c.Expiry = nil })), ReasonMismatch},
		{"a token of another issuer is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) { c.Issuer = "https://evil.example/" })), ReasonMismatch},
		{"a token without iss is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) { c.Issuer = "" })), ReasonMismatch},
		{"a token for another audience is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) { c.Audience = josejwt.Audience{"someone-else"} })), ReasonMismatch},
		{"a token without aud is refused", pemCfg, joseToken(t, jose.ES256, f.ec, "", claims(func(c *josejwt.Claims) { c.Audience = nil })), ReasonMismatch},
		{"a token of an algorithm not pinned is refused", Config{Method: JWT, Keys: []Secret{NewSecret(ecPEM)}, Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience},
			joseToken(t, jose.ES384, mustEC384(t), "", claims(nil)), ReasonMismatch},
		{"a PS256 token is refused where only RS256 is pinned", Config{Method: JWT, Keys: []Secret{NewSecret(rsaPEM)}, Algorithms: []string{"RS256"}, Issuer: jwtIssuer, Audience: jwtAudience},
			joseToken(t, jose.PS256, f.rsa, "", claims(nil)), ReasonMismatch},
		{"alg none is refused", pemCfg, b64json(`{"alg":"none","typ":"JWT"}`) + "." + payload + ".", ReasonMismatch},
		{"an HS256 token keyed with the public key (alg confusion) is refused", Config{Method: JWT, Keys: []Secret{NewSecret(rsaPEM)}, Algorithms: []string{"RS256"}, Issuer: jwtIssuer, Audience: jwtAudience},
			joseToken(t, jose.HS256, []byte(rsaPEM), "", claims(nil)), ReasonMismatch},
		{"an ES256 signature swapped under an RS256 header is refused", pemCfg,
			b64json(`{"alg":"RS256","typ":"JWT"}`) + "." + payload + "." + strings.Split(good, ".")[2], ReasonMismatch},
		{"a token with two parts is malformed", pemCfg, header + "." + payload, ReasonMalformed},
		{"a token that is not base64 is malformed", pemCfg, "!!!.???.***", ReasonMalformed},
		{"a header that is not JSON is malformed", pemCfg, b64json("alg") + "." + payload + ".c2ln", ReasonMalformed},
		{"a token over 16 KiB is malformed", pemCfg, header + "." + strings.Repeat("A", 17<<10) + ".c2ln", ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tc.token), Now: now})
			assertJWTVerdict(t, err, tc.want)
		})
	}
}

// A sender's token that fails a claim, an algorithm or a kid is refused for that, before
// its signature is checked: the refusal costs no public-key operation, and the detail says
// so (a token signed by a key we do not hold would otherwise be refused as a bad signature).
func TestJWTRefusesClaimsBeforeCheckingTheSignature(t *testing.T) {
	f := newJWTFixture(t)
	now := testNow
	cfg := Config{Method: JWT, Keys: []Secret{NewSecret(jwksDoc(t, map[string]any{"ec-1": &f.ec.PublicKey}))},
		Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Every token is signed by ec2, which the endpoint does not hold.
	forged := func(kid string, edit func(*josejwt.Claims)) string {
		c := goodClaims(now)
		edit(&c)
		return joseToken(t, jose.ES256, f.ec2, kid, c)
	}
	cases := []struct {
		name, token string
		want        Reason
		detail      string
	}{
		{"an expired token is refused for its exp", forged("ec-1", func(c *josejwt.Claims) { c.Expiry = josejwt.NewNumericDate(now.Add(-time.Hour)) }),
			ReasonExpired, "token expired (exp)"},
		{"a token not valid yet is refused for its nbf", forged("ec-1", func(c *josejwt.Claims) { c.NotBefore = josejwt.NewNumericDate(now.Add(time.Hour)) }),
			ReasonExpired, "token not valid yet (nbf)"},
		{"a token issued in the future is refused for its iat", forged("ec-1", func(c *josejwt.Claims) { c.IssuedAt = josejwt.NewNumericDate(now.Add(time.Hour)) }),
			ReasonExpired, "token issued in the future (iat)"},
		{"a token of another issuer is refused for its iss", forged("ec-1", func(c *josejwt.Claims) { c.Issuer = "https://evil.example/" }),
			ReasonMismatch, "iss is not the configured issuer"},
		{"a token for another audience is refused for its aud", forged("ec-1", func(c *josejwt.Claims) { c.Audience = josejwt.Audience{"other"} }),
			ReasonMismatch, "aud does not name the configured audience"},
		{"a token without exp is refused for the missing claim", forged("ec-1", func(c *josejwt.Claims) { c.Expiry = nil }),
			ReasonMismatch, "a required claim (exp, iss or aud) is missing"},
		{"a token naming an unknown kid is refused for its kid", forged("ec-9", func(*josejwt.Claims) {}),
			ReasonMismatch, "no configured key has the token's kid and algorithm"},
		{"a well-formed token of another key is refused for its signature", forged("ec-1", func(*josejwt.Claims) {}),
			ReasonMismatch, "signing method not allowed or signature invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tc.token), Now: now})
			assertJWTVerdict(t, err, tc.want)
			var f *Failure
			if errors.As(err, &f) && f.Detail != tc.detail {
				t.Errorf("detail %q, want %q", f.Detail, tc.detail)
			}
		})
	}
}

func assertJWTVerdict(t *testing.T, err error, want Reason) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("got %v, want a %s failure", err, want)
	}
	if f.Reason != want || f.Method != JWT {
		t.Errorf("got %v, want jwt: %s", f, want)
	}
}

func TestJWTRefusesRequestsWithoutABearerToken(t *testing.T) {
	v, err := New(jwtConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    []string
		want Reason
	}{
		{"no Authorization header is missing", nil, ReasonMissing},
		{"a Basic Authorization is malformed", []string{"Authorization", "Basic dTpw"}, ReasonMalformed},
		{"Bearer without a token is malformed", []string{"Authorization", "Bearer "}, ReasonMalformed},
		{"two different Authorization headers are malformed", []string{"Authorization", "Bearer a.b.c", "Authorization", "Bearer d.e.f"}, ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertJWTVerdict(t, v.Verify(&Request{Header: hdr(tc.h...), Now: testNow}), tc.want)
		})
	}
}

func TestJWTConfigIsCheckedAtLoad(t *testing.T) {
	f := newJWTFixture(t)
	ecPEM := pubPEM(t, &f.ec.PublicKey)
	privDER, _ := x509.MarshalPKCS8PrivateKey(f.ec)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	base := func(edit func(*Config)) Config {
		c := Config{Method: JWT, Keys: []Secret{NewSecret(ecPEM)}, Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
		edit(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string
		want string
	}{
		{"alg none is refused", base(func(c *Config) { c.Algorithms = []string{"none"} }), "algorithms", "none is never accepted"},
		{"an HMAC algorithm is refused", base(func(c *Config) { c.Algorithms = []string{"HS256"} }), "algorithms", "HMAC"},
		{"an unknown algorithm is refused", base(func(c *Config) { c.Algorithms = []string{"XX1"} }), "algorithms", "unknown algorithm"},
		{"no algorithms is refused", base(func(c *Config) { c.Algorithms = nil }), "algorithms", "algorithms is required"},
		{"no issuer is refused", base(func(c *Config) { c.Issuer = "" }), "issuer", "issuer is required"},
		{"no audience is refused", base(func(c *Config) { c.Audience = "" }), "audience", "audience is required"},
		{"no keys and no jwks_url are refused", base(func(c *Config) { c.Keys = nil }), "keys", "keys, jwks_url or secrets is required"},
		{"a private key is refused", base(func(c *Config) {
			c.Keys = []Secret{NewSecret(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})))}
		}), "keys", "not a public key"},
		{"a key that fits no pinned algorithm is refused", base(func(c *Config) { c.Algorithms = []string{"RS256"} }), "keys", "fits none of algorithms"},
		{"an RSA key under 2048 bits is refused", base(func(c *Config) {
			c.Keys, c.Algorithms = []Secret{NewSecret(pubPEM(t, &small.PublicKey))}, []string{"RS256"}
		}), "keys", "too small"},
		{"text that is no key is refused", base(func(c *Config) { c.Keys = []Secret{NewSecret("hello")} }), "keys", "neither a PEM public key nor a JWKS"},
		{"a JWKS with a private key is refused", base(func(c *Config) {
			b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.ec, KeyID: "p"}}})
			c.Keys = []Secret{NewSecret(string(b))}
		}), "keys", "private key"},
		{"a leeway over 5m is refused", base(func(c *Config) { c.Leeway = time.Hour }), "leeway", "leeway must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.Key != tc.key || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q on key %q, want %q on %q", err, ce.Key, tc.want, tc.key)
			}
		})
	}
}

// Two endpoints with the same settings but different keys share a Template; each must
// still accept only its own identity provider's tokens.
func TestJWTEndpointsSharingATemplateKeepTheirOwnKeys(t *testing.T) {
	f := newJWTFixture(t)
	mk := func(k *ecdsa.PrivateKey) Config {
		return Config{Method: JWT, Keys: []Secret{NewSecret(pubPEM(t, &k.PublicKey))}, Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	}
	var ts Templates
	a, err := ts.Compile(mk(f.ec))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Compile(mk(f.ec2))
	if err != nil {
		t.Fatal(err)
	}
	if a.Template() != b.Template() {
		t.Fatal("the endpoints do not share a template: the test proves nothing")
	}
	tokA := joseToken(t, jose.ES256, f.ec, "", goodClaims(testNow))
	assertJWTVerdict(t, a.Verify(&Request{Header: hdr("Authorization", "Bearer "+tokA), Now: testNow}), "")
	assertJWTVerdict(t, b.Verify(&Request{Header: hdr("Authorization", "Bearer "+tokA), Now: testNow}), ReasonMismatch)
}

func FuzzJWTToken(f *testing.F) {
	fx := newJWTFixture(f)
	doc := jwksDoc(f, map[string]any{"k": &fx.ec.PublicKey})
	// Public keys and an HMAC secret on one endpoint: the fuzzer also tries tokens of HS*
	// algorithms, which must verify with the secret only, never with the public key.
	cfg := Config{Method: JWT, Keys: []Secret{NewSecret(doc)}, Secrets: []Secret{NewSecret(hmacSecret1)},
		Algorithms: []string{"ES256", "HS256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	v, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	good := joseToken(f, jose.ES256, fx.ec, "k", goodClaims(testNow))
	goodHMAC := hmacJWT(f, "HS256", []byte(hmacSecret1), hmacClaims(testNow))
	f.Add(good)
	f.Add(goodHMAC)
	f.Add(hmacJWT(f, "HS256", []byte(doc), hmacClaims(testNow)))
	f.Add(b64json(`{"alg":"none"}`) + "." + strings.Split(good, ".")[1] + ".")
	f.Add(b64json(`{"alg":"ES256","kid":["x"]}`) + ".e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		err := v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tok), Now: testNow})
		if err == nil && tok != good && tok != goodHMAC {
			// Only a token go-jose signed with the key can pass; a mutation that still
			// verifies would be a forgery.
			parts := strings.Split(tok, ".")
			if len(parts) != 3 || parts[2] == "" {
				t.Fatalf("accepted %q", tok)
			}
		}
		var fl *Failure
		if err != nil && !errors.As(err, &fl) {
			t.Fatalf("error %v is not a *Failure", err)
		}
		if fl != nil && strings.Contains(fl.Detail, tok) && len(tok) > 8 {
			t.Fatalf("detail %q quotes the token", fl.Detail)
		}
	})
}

func FuzzJWKS(f *testing.F) {
	fx := newJWTFixture(f)
	f.Add(jwksDoc(f, map[string]any{"e": &fx.ec.PublicKey, "r": &fx.rsa.PublicKey}))
	f.Add(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`)
	f.Add(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		keys, err := parseJWTKeys([]byte(doc))
		if err == nil {
			for _, k := range keys {
				if usableKey(k.key) != nil {
					t.Fatalf("parsed an unusable key %T", k.key)
				}
			}
		}
	})
}

func BenchmarkVerifyJWT(b *testing.B) {
	fx := newJWTFixture(b)
	cfg := Config{Method: JWT, Keys: []Secret{NewSecret(pubPEM(b, &fx.ec.PublicKey))}, Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	v, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{Header: hdr("Authorization", "Bearer "+joseToken(b, jose.ES256, fx.ec, "", goodClaims(testNow))), Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(req); err != nil {
			b.Fatal(err)
		}
	}
}

// The gateway's rejection scenario on a jwt endpoint: a well-formed token of the wrong key.
func BenchmarkRejectJWT(b *testing.B) {
	fx := newJWTFixture(b)
	cfg := Config{Method: JWT, Keys: []Secret{NewSecret(pubPEM(b, &fx.ec.PublicKey))}, Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	benchReject(b, cfg, &Request{Header: hdr("Authorization", "Bearer "+joseToken(b, jose.ES256, fx.ec2, "", goodClaims(testNow))), Now: testNow})
}

// An expired token of the right shape (a replayed old token): refused on its exp, before
// the signature check.
func BenchmarkRejectJWTExpired(b *testing.B) {
	fx := newJWTFixture(b)
	cfg := Config{Method: JWT, Keys: []Secret{NewSecret(pubPEM(b, &fx.ec.PublicKey))}, Algorithms: []string{"ES256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	c := goodClaims(testNow)
	c.Expiry = josejwt.NewNumericDate(testNow.Add(-time.Hour))
	benchReject(b, cfg, &Request{Header: hdr("Authorization", "Bearer "+joseToken(b, jose.ES256, fx.ec, "", c)), Now: testNow})
}

// A prober's usual try: garbage after Bearer, refused before any signature check.
func BenchmarkRejectJWTMalformed(b *testing.B) {
	benchReject(b, jwtConfig(b), &Request{Header: hdr("Authorization", "Bearer not-a-jwt"), Now: testNow})
}

func TestSignJWTMakesATokenAnIndependentVerifierAccepts(t *testing.T) {
	f := newJWTFixture(t)
	cfg := Config{Method: JWT, Keys: []Secret{NewSecret(pubPEM(t, &f.rsa.PublicKey))}, Algorithms: []string{"RS256"}, Issuer: jwtIssuer, Audience: jwtAudience}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(f.rsa)})
	tok, err := SignJWT(cfg, priv, testNow)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var c josejwt.Claims
	if err := parsed.Claims(&f.rsa.PublicKey, &c); err != nil {
		t.Fatalf("go-jose refuses the token: %v", err)
	}
	if err := c.ValidateWithLeeway(josejwt.Expected{Issuer: jwtIssuer, AnyAudience: josejwt.Audience{jwtAudience}, Time: testNow}, 0); err != nil {
		t.Errorf("claims: %v", err)
	}
	if got := c.Expiry.Time().Sub(testNow); got != JWTLifetime {
		t.Errorf("lifetime %s, want %s", got, JWTLifetime)
	}
	v, _ := New(cfg)
	assertJWTVerdict(t, v.Verify(&Request{Header: hdr("Authorization", "Bearer "+tok), Now: testNow}), "")
	t.Run("a public key is refused as the signing key", func(t *testing.T) {
		if _, err := SignJWT(cfg, []byte(pubPEM(t, &f.rsa.PublicKey)), testNow); err == nil {
			t.Error("signed with a public key")
		}
	})
	t.Run("a key that fits no algorithm of the endpoint is refused", func(t *testing.T) {
		der, _ := x509.MarshalPKCS8PrivateKey(f.ec)
		if _, err := SignJWT(cfg, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), testNow); err == nil || !strings.Contains(err.Error(), "fits none") {
			t.Errorf("got %v", err)
		}
	})
}
