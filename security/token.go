package security

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

var tokenMethod = method{
	name: Token,
	keys: []Key{
		secretKey("token", "a token (a secret reference)", fToken),
		secretKey("secret", "a secret (a secret reference)", fTokenSecret),
		headerKey("token_header", fTokenHeader),
		headerKey("secret_header", fSecretHeader),
	},
	prepare: newToken,
	credentials: func(cfg Config) (credentialHeaders, string) {
		return credentialHeaders{orDefault(cfg.TokenHeader, DefaultTokenHeader), orDefault(cfg.SecretHeader, DefaultSecretHeader)}, ""
	},
}

// tokenScheme checks a token header and a secret header, both of which must match. Its
// Check holds the token and the secret, then their digests.
type tokenScheme struct {
	tokenHeader, secretHeader string
}

func newToken(cfg Config, p *problems) (scheme, material) {
	s := &tokenScheme{
		tokenHeader:  orDefault(cfg.TokenHeader, DefaultTokenHeader),
		secretHeader: orDefault(cfg.SecretHeader, DefaultSecretHeader),
	}
	if cfg.Token.IsZero() {
		p.at("token", "token is required")
	}
	if cfg.TokenSecret.IsZero() {
		p.at("secret", "secret is required")
	}
	checkSendable("token", -1, cfg.Token.b, p)
	checkSendable("secret", -1, cfg.TokenSecret.b, p)
	checkHeaderName("token_header", s.tokenHeader, p)
	checkHeaderName("secret_header", s.secretHeader, p)
	if strings.EqualFold(s.tokenHeader, s.secretHeader) {
		p.at("secret_header", "token_header and secret_header must differ")
	}
	return s, material{digests: []digest{digestOf(cfg.Token.b), digestOf(cfg.TokenSecret.b)}}
}

func (s *tokenScheme) check(req Request, c *Check) *Failure {
	r := &req
	tok, tst := headerOrCGI(r.Header, s.tokenHeader)
	sec, sst := headerOrCGI(r.Header, s.secretHeader)
	switch {
	case tst == absent && sst == absent:
		return fail(Token, ReasonMissing, "no "+s.tokenHeader+" or "+s.secretHeader+" header")
	case tst == absent:
		return fail(Token, ReasonMissing, "no "+s.tokenHeader+" header")
	case sst == absent:
		return fail(Token, ReasonMissing, "no "+s.secretHeader+" header")
	case tst == conflicting:
		return fail(Token, ReasonMalformed, s.tokenHeader+" header sent more than once with different values")
	case sst == conflicting:
		return fail(Token, ReasonMalformed, s.secretHeader+" header sent more than once with different values")
	}
	t := equalDigest(digestOf([]byte(tok)), c.digests[0])
	k := equalDigest(digestOf([]byte(sec)), c.digests[1])
	switch {
	case t&k == 1:
		return nil
	case t == 1:
		return fail(Token, ReasonMismatch, s.secretHeader+" does not match")
	case k == 1:
		return fail(Token, ReasonMismatch, s.tokenHeader+" does not match")
	}
	return fail(Token, ReasonMismatch, s.tokenHeader+" and "+s.secretHeader+" do not match")
}

func (s *tokenScheme) sign(c *Check, _ *signing, h http.Header, _ url.Values) error {
	h.Set(s.tokenHeader, string(c.raw(0)))
	h.Set(s.secretHeader, string(c.raw(1)))
	return nil
}

func (*tokenScheme) messageID(Request) (string, time.Duration) { return "", 0 }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func checkHeaderName(key, name string, p *problems) {
	if !validHeaderName(name) {
		p.at(key, "%s %q is not a valid HTTP header name", key, name)
	}
}
