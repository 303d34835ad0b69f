package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushbackd/pushbackd/internal/jsondec"
)

var jwtMethod = method{
	name: JWT,
	keys: []Key{
		// keys, jwks_url or secrets (or several): newJWT requires one.
		secretsKey("keys", "", fKeys),
		textKey("jwks_url", fJWKSURL),
		durationKey("jwks_max_age", fJWKSMaxAge),
		// secrets are HMAC keys shared with the identity provider: they alone enable HS*.
		secretsKey("secrets", "", fSecrets),
		{Name: "algorithms", Kind: KeyTexts, Values: jwtAllAlgorithms, Need: "algorithms: the signing algorithms to accept, e.g. [RS256]", field: fAlgorithms},
		{Name: "issuer", Kind: KeyText, Need: "issuer: the iss claim tokens must carry", field: fIssuer},
		{Name: "audience", Kind: KeyText, Need: "audience: the aud value tokens must carry", field: fAudience},
		durationKey("leeway", fLeeway),
	},
	challenge:   `Bearer realm="pushbackd"`,
	prepare:     newJWT,
	credentials: func(Config) (credentialHeaders, string) { return credentialHeaders{}, "" }, // Authorization is always redacted
}

// jwtAlgorithms are the asymmetric algorithms an endpoint may pin, verified with keys or
// jwks_url only. none is never accepted.
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// jwtHMACAlgorithms are accepted only beside secrets, and verified with those secrets
// only: never with a public key, whose text is no secret. Mixing the two is the classic
// algorithm confusion (a token "signed" with the PEM of a public key as its HMAC secret),
// so HS* never reaches a key of keys or jwks_url, and RS/PS/ES/EdDSA never a secret.
var jwtHMACAlgorithms = []string{"HS256", "HS384", "HS512"}

var jwtAllAlgorithms = append(slices.Clip(jwtAlgorithms), jwtHMACAlgorithms...)

// hmacKeySize is the least secret length for alg: RFC 7518 §3.2 requires a key at least
// as long as the hash output.
func hmacKeySize(alg string) int {
	switch alg {
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return 32
}

func isHMAC(alg string) bool { return slices.Contains(jwtHMACAlgorithms, alg) }

// Bounds on what a sender controls, so a hostile token costs little before it is refused.
const (
	// maxJWTLength bounds the Authorization value: identity providers' tokens are well
	// under 4 KiB; 16 KiB leaves room for large claim sets.
	maxJWTLength = 16 << 10
	// DefaultLeeway is the clock skew allowed on exp and nbf unless leeway says otherwise.
	DefaultLeeway = 30 * time.Second
	maxLeeway     = 5 * time.Minute
	// maxJWTKeys bounds the keys of one endpoint, so that a token without kid costs at most
	// this many signature checks.
	maxJWTKeys = 16
	// DefaultJWKSMaxAge is how long keys from a jwks_url are used before the next token
	// fetches them again, unless jwks_max_age says otherwise. A key the provider withdraws
	// (compromised, rotated out) stops verifying within this time, while fetching costs one
	// request an hour per endpoint; providers publish rotated keys days ahead, so an hour
	// never makes a new key wait.
	DefaultJWKSMaxAge = time.Hour
	minJWKSMaxAge     = time.Minute
	maxJWKSMaxAge     = 24 * time.Hour
)

// jwtScheme checks Authorization: Bearer <JWT>. It holds what endpoints with the same
// settings share; the keys, which differ per endpoint, are in the Check.
type jwtScheme struct {
	algs     []string
	issuer   string
	audience string
	leeway   time.Duration
	parser   *jwt.Parser // read only: shared by every check
}

// jwtClaims are the library's MapClaims, decoded by internal/jsondec, which gives exactly
// what encoding/json gives for `any` (FuzzDecodeMatchesEncodingJSON), instead of by
// encoding/json's reflection. Claims are checked before any signature, so an expired or
// foreign token is refused after decoding them, and that decoding was most of what such a
// refusal cost: BenchmarkRejectJWTExpired 61 → 42 allocations. The claim checks are the
// library's own (MapClaims' methods), so every token gets the answer it got before
// (TestJWTClaimsDecodeAsTheLibrarysMapClaims).
type jwtClaims struct{ jwt.MapClaims }

func (c *jwtClaims) UnmarshalJSON(b []byte) error {
	v, err := jsondec.Decode(b)
	if err != nil {
		return err
	}
	switch m := v.(type) {
	case map[string]any:
		if c.MapClaims == nil {
			c.MapClaims = m
		} else {
			maps.Copy(c.MapClaims, m) // as encoding/json fills a map it is given
		}
		return nil
	case nil:
		return nil // JSON null leaves a map as it was, as encoding/json does
	}
	return errClaimsNotObject
}

var errClaimsNotObject = errors.New("claims are not a JSON object")

// jwtKey is one parsed verification key: kid "" when the source named none.
type jwtKey struct {
	kid string
	key crypto.PublicKey
}

func newJWT(cfg Config, p *problems) (scheme, material) {
	s := &jwtScheme{algs: cfg.Algorithms, issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway,
		parser: jwt.NewParser()} // ParseUnverified checks no method: check does, against algs
	if s.leeway == 0 {
		s.leeway = DefaultLeeway
	}
	if s.leeway < 0 || s.leeway > maxLeeway {
		p.at("leeway", "leeway must be between 0s and %s", maxLeeway)
	}
	if len(s.algs) == 0 {
		p.at("algorithms", "algorithms is required (at least one of %s)", strings.Join(jwtAllAlgorithms, ", "))
	}
	hasPublic := len(cfg.Keys) > 0 || cfg.JWKSURL != ""
	hmacSize, asymmetric := 0, false
	for i, a := range s.algs {
		switch {
		case strings.EqualFold(a, "none"):
			p.item("algorithms", i, "algorithms[%d]: none is never accepted: a token must be signed", i)
		case isHMAC(a):
			hmacSize = max(hmacSize, hmacKeySize(a))
			if len(cfg.Secrets) == 0 {
				p.item("algorithms", i, "algorithms[%d]: %s is HMAC, which needs secrets (the keys shared with the identity provider); keys and jwks_url hold public keys, which are never HMAC secrets", i, a)
			}
		case !slices.Contains(jwtAlgorithms, a):
			p.item("algorithms", i, "algorithms[%d]: unknown algorithm %q (want one of %s)", i, a, strings.Join(jwtAllAlgorithms, ", "))
		default:
			asymmetric = true
			if !hasPublic && len(cfg.Secrets) > 0 {
				p.item("algorithms", i, "algorithms[%d]: %s needs the identity provider's public keys (keys or jwks_url); secrets verify HS256, HS384 and HS512 only", i, a)
			}
		}
	}
	if len(cfg.Secrets) > 0 && hmacSize == 0 {
		p.at("secrets", "secrets are HMAC keys: algorithms must name HS256, HS384 or HS512 to use them")
	}
	if hasPublic && !asymmetric && hmacSize > 0 {
		p.at("algorithms", "keys and jwks_url hold public keys: algorithms must name an asymmetric algorithm (%s) to use them", strings.Join(jwtAlgorithms, ", "))
	}
	secrets := requireSecrets("secrets", cfg.Secrets, &problems{})
	for i, sec := range secrets {
		switch {
		case looksLikePublicKey(sec):
			p.item("secrets", i, "secrets[%d] is a public key, not an HMAC secret: a public key is known to everyone (put it in keys)", i)
		case hmacSize > 0 && len(sec) < hmacSize:
			p.item("secrets", i, "secrets[%d] is %d bytes; HMAC with %s needs at least %d (RFC 7518 §3.2)", i, len(sec), strings.Join(slices.DeleteFunc(slices.Clone(s.algs), func(a string) bool { return !isHMAC(a) }), ", "), hmacSize)
		}
	}
	if len(secrets) > maxJWTKeys {
		p.at("secrets", "secrets hold %d secrets, more than %d", len(secrets), maxJWTKeys)
	}
	maxAge := cfg.JWKSMaxAge
	switch {
	case maxAge != 0 && cfg.JWKSURL == "":
		p.at("jwks_max_age", "jwks_max_age applies only with jwks_url")
	case maxAge == 0:
		maxAge = DefaultJWKSMaxAge
	case maxAge < minJWKSMaxAge || maxAge > maxJWKSMaxAge:
		p.at("jwks_max_age", "jwks_max_age must be between %s and %s", minJWKSMaxAge, maxJWKSMaxAge)
	}
	if s.issuer == "" {
		p.at("issuer", "issuer is required")
	}
	if s.audience == "" {
		p.at("audience", "audience is required")
	}
	var srcs [][]byte
	var remote *remoteJWKS
	if cfg.JWKSURL == "" {
		if len(cfg.Keys) == 0 && len(cfg.Secrets) == 0 {
			p.at("keys", "keys, jwks_url or secrets is required: the identity provider's public keys, where it publishes them, or the HMAC secrets it shares")
		}
		srcs = requireSecrets("keys", cfg.Keys, &problems{})
		for i, k := range srcs {
			if len(k) == 0 {
				p.item("keys", i, "keys[%d] is empty", i)
			}
		}
	} else {
		srcs = requireSecrets("keys", cfg.Keys, &problems{}) // may be empty beside jwks_url
		remote = newRemoteJWKS(cfg.JWKSURL, cfg.Egress, maxAge, p)
	}
	var keys []jwtKey
	for i, src := range srcs {
		ks, err := parseJWTKeys(src)
		if err != nil {
			p.item("keys", i, "keys[%d]: %v", i, err)
			continue
		}
		for _, k := range ks {
			if !slices.ContainsFunc(s.algs, func(a string) bool { return keyFits(a, k.key) }) {
				p.item("keys", i, "keys[%d]: a %s key fits none of algorithms %s", i, keyType(k.key), strings.Join(s.algs, ", "))
			}
		}
		keys = append(keys, ks...)
	}
	if len(keys) > maxJWTKeys {
		p.at("keys", "keys hold %d keys, more than %d", len(keys), maxJWTKeys)
	}
	return s, material{jwt: &jwtKeys{static: keys, remote: remote, secrets: secrets, nKeys: len(cfg.Keys)}}
}

// jwtKeys are one endpoint's keys: static ones from keys, and its jwks_url's, for the
// asymmetric algorithms; secrets for HS*.
type jwtKeys struct {
	static  []jwtKey
	remote  *remoteJWKS // nil without jwks_url
	secrets [][]byte
	// nKeys is how many of the Check's secrets are keys; the rest are secrets. Check.Config
	// splits them there.
	nKeys int
}

// looksLikePublicKey reports whether b is a PEM block or a JWK(S), which an HMAC secret
// never is: such a "secret" is public, and anyone could sign with it.
func looksLikePublicKey(b []byte) bool {
	text := strings.TrimSpace(string(b))
	return strings.HasPrefix(text, "-----BEGIN") || (strings.HasPrefix(text, "{") && strings.Contains(text, `"kty"`))
}

// parseJWTKeys reads PEM public keys (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE blocks)
// or a JWKS document.
func parseJWTKeys(b []byte) ([]jwtKey, error) {
	text := strings.TrimSpace(string(b))
	if strings.HasPrefix(text, "{") {
		return parseJWKS(b)
	}
	var out []jwtKey
	rest := []byte(text)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		var k any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key (a private key does not belong here)", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", blk.Type, err)
		}
		if err := usableKey(k); err != nil {
			return nil, err
		}
		out = append(out, jwtKey{key: k})
	}
	if len(out) == 0 {
		return nil, errors.New("holds neither a PEM public key nor a JWKS document")
	}
	return out, nil
}

// usableKey refuses key types and sizes no algorithm here verifies safely.
func usableKey(k any) error {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too small (at least 2048)", k.N.BitLen())
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", k)
	}
	return nil
}

// keyFits reports whether alg verifies with k, so a token's alg header can only select a
// key of the matching type.
func keyFits(alg string, k crypto.PublicKey) bool {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve.Params().BitSize == 256
		case "ES384":
			return k.Curve.Params().BitSize == 384
		case "ES512":
			return k.Curve.Params().BitSize == 521
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func keyType(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

func (s *jwtScheme) check(req Request, c *Check) *Failure {
	r := &req
	scheme, tok, st := authorization(r.Header)
	switch st {
	case absent:
		return fail(JWT, ReasonMissing, "no Authorization header")
	case conflicting:
		return fail(JWT, ReasonMalformed, "Authorization header sent more than once with different values")
	}
	switch {
	case !strings.EqualFold(scheme, "Bearer"):
		return fail(JWT, ReasonMalformed, "Authorization scheme is not Bearer")
	case tok == "":
		return fail(JWT, ReasonMalformed, "Authorization Bearer has no token")
	case len(tok) > maxJWTLength:
		return fail(JWT, ReasonMalformed, "token longer than 16 KiB")
	case strings.Count(tok, ".") != 2:
		return fail(JWT, ReasonMalformed, "token is not a signed JWT (header.payload.signature)")
	}
	// The checks run cheapest first, and the signature last: the library's Parse verifies
	// the signature before the claims, so a token that is expired, of another issuer or
	// audience, or of an algorithm or kid we hold no key for would cost an ECDSA or RSA
	// verification (55-70 µs) before being refused. Whatever fails here fails the same way
	// after a signature check would have; only the order, and so the cost, differs.
	now := r.now()
	claims := &jwtClaims{}
	token, _, err := s.parser.ParseUnverified(tok, claims)
	if err != nil {
		return fail(JWT, jwtReason(err), jwtDetail(err))
	}
	alg := token.Method.Alg()
	if !slices.Contains(s.algs, alg) {
		return fail(JWT, ReasonMismatch, jwtDetail(jwt.ErrTokenSignatureInvalid))
	}
	validator := jwt.NewValidator(
		jwt.WithIssuer(s.issuer),
		jwt.WithAudience(s.audience),
		jwt.WithLeeway(s.leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // an iat in the future (past the leeway) is refused too
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err := validator.Validate(claims); err != nil {
		return fail(JWT, jwtReason(err), jwtDetail(err))
	}
	text := tok[:strings.LastIndexByte(tok, '.')]
	if isHMAC(alg) {
		// Secrets only, never a public key: see jwtHMACAlgorithms. Any secret may match
		// (rotation); an HMAC check costs about a microsecond, so no kid is needed.
		for _, sec := range c.jwt.secrets {
			if token.Method.Verify(text, token.Signature, sec) == nil {
				return nil
			}
		}
		return fail(JWT, ReasonMismatch, jwtDetail(jwt.ErrTokenSignatureInvalid))
	}
	kid, hasKid := token.Header["kid"].(string)
	keys := c.jwt.static
	var fetchErr error
	if c.jwt.remote != nil {
		var rk []jwtKey
		rk, fetchErr = c.jwt.remote.lookup(kid, now)
		keys = append(slices.Clip(keys), rk...)
	}
	tried := false
	for _, k := range keys {
		if !keyFits(alg, k.key) || (hasKid && k.kid != "" && k.kid != kid) {
			continue
		}
		tried = true
		if token.Method.Verify(text, token.Signature, k.key) == nil {
			return nil
		}
	}
	if !tried {
		if fetchErr != nil {
			return fail(JWT, ReasonMismatch, errNoJWTKey.Error()+": "+fetchErr.Error())
		}
		return fail(JWT, ReasonMismatch, errNoJWTKey.Error())
	}
	return fail(JWT, ReasonMismatch, jwtDetail(jwt.ErrTokenSignatureInvalid))
}

var errNoJWTKey = errors.New("no configured key has the token's kid and algorithm")

// jwtReason maps the library's errors onto the stable reasons.
func jwtReason(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	}
	return ReasonMismatch
}

// jwtDetail says which check refused the token without quoting it: the library's messages
// name claims and algorithms, never values a sender chose, except for the key lookup.
func jwtDetail(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signing method not allowed or signature invalid"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired (exp)"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "a required claim (exp, iss or aud) is missing"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "iss is not the configured issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "aud does not name the configured audience"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "token cannot be verified with the configured keys"
	}
	return "token refused"
}

// sign makes a token only for an endpoint with secrets: it signs with the first secret
// under the first HS* algorithm pinned, as the partner's identity provider would. With
// public keys alone the Check holds nothing to sign with; the CLI signs with a private key
// of the operator's through SignJWT.
func (s *jwtScheme) sign(c *Check, in *signing, h http.Header, _ url.Values) error {
	i := slices.IndexFunc(s.algs, isHMAC)
	if i < 0 || len(c.jwt.secrets) == 0 {
		return errors.New("jwt: tokens come from the partner's identity provider; pushbackd holds only its public keys")
	}
	claims := ownTokenClaims(s.issuer, s.audience, "pushbackd-sign", in.now)
	tok, err := jwt.NewWithClaims(jwt.GetSigningMethod(s.algs[i]), claims).SignedString(c.jwt.secrets[0])
	if err != nil {
		return fmt.Errorf("jwt: sign: %w", err)
	}
	h.Set("Authorization", "Bearer "+tok)
	return nil
}

func (*jwtScheme) messageID(Request) (string, time.Duration) { return "", 0 }
