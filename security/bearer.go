package security

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

var bearerMethod = method{
	name: Bearer,
	keys: []Key{
		secretsKey("tokens", "tokens: a list of at least one secret reference", fTokens),
	},
	challenge:   `Bearer realm="pushbackd"`,
	prepare:     newBearer,
	credentials: func(Config) (credentialHeaders, string) { return credentialHeaders{}, "" }, // Authorization is always redacted
}

// bearerScheme checks Authorization: Bearer <token> against the digests of a list of
// tokens, which its Check holds.
type bearerScheme struct{}

func newBearer(cfg Config, p *problems) (scheme, material) {
	tokens := requireSecrets("tokens", cfg.Tokens, p)
	for i, t := range tokens {
		checkSendable("tokens", i, t, p)
	}
	return bearerScheme{}, material{digests: digestsOf(tokens)}
}

func (bearerScheme) check(req Request, c *Check) *Failure {
	r := &req
	scheme, tok, st := authorization(r.Header)
	switch st {
	case absent:
		return fail(Bearer, ReasonMissing, "no Authorization header")
	case conflicting:
		return fail(Bearer, ReasonMalformed, "Authorization header sent more than once with different values")
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return fail(Bearer, ReasonMalformed, "Authorization scheme is not Bearer")
	}
	if tok == "" {
		return fail(Bearer, ReasonMalformed, "Authorization Bearer has no token")
	}
	if !matchesAny([]byte(tok), c.digests) {
		return fail(Bearer, ReasonMismatch, "no configured token matches")
	}
	return nil
}

func (bearerScheme) sign(c *Check, _ *signing, h http.Header, _ url.Values) error {
	h.Set("Authorization", "Bearer "+string(c.raw(0)))
	return nil
}

func (bearerScheme) messageID(Request) (string, time.Duration) { return "", 0 }
