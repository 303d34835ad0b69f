package security

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// tokenScheme checks a token header and a secret header, both of which must match.
type tokenScheme struct {
	tokenHeader, secretHeader string
	token, secret             []byte
	tokenDigest, secretDigest digest
}

func newToken(cfg Config, p *problems) *tokenScheme {
	s := &tokenScheme{
		tokenHeader:  orDefault(cfg.TokenHeader, DefaultTokenHeader),
		secretHeader: orDefault(cfg.SecretHeader, DefaultSecretHeader),
		token:        cfg.Token.b,
		secret:       cfg.TokenSecret.b,
		tokenDigest:  digestOf(cfg.Token.b),
		secretDigest: digestOf(cfg.TokenSecret.b),
	}
	if cfg.Token.IsZero() {
		p.add("token is required")
	}
	if cfg.TokenSecret.IsZero() {
		p.add("secret is required")
	}
	checkSendable("token", s.token, p)
	checkSendable("secret", s.secret, p)
	checkHeaderName("token_header", s.tokenHeader, p)
	checkHeaderName("secret_header", s.secretHeader, p)
	if strings.EqualFold(s.tokenHeader, s.secretHeader) {
		p.add("token_header and secret_header must differ")
	}
	return s
}

func (s *tokenScheme) check(r *Request) *Failure {
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
	t := equalDigest(digestOf([]byte(tok)), s.tokenDigest)
	c := equalDigest(digestOf([]byte(sec)), s.secretDigest)
	switch {
	case t&c == 1:
		return nil
	case t == 1:
		return fail(Token, ReasonMismatch, s.secretHeader+" does not match")
	case c == 1:
		return fail(Token, ReasonMismatch, s.tokenHeader+" does not match")
	}
	return fail(Token, ReasonMismatch, s.tokenHeader+" and "+s.secretHeader+" do not match")
}

func (s *tokenScheme) sign(_ []byte, _ string, _ time.Time, h http.Header, _ url.Values) error {
	h.Set(s.tokenHeader, string(s.token))
	h.Set(s.secretHeader, string(s.secret))
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func checkHeaderName(key, name string, p *problems) {
	if !validHeaderName(name) {
		p.add("%s %q is not a valid HTTP header name", key, name)
	}
}
