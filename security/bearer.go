package security

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// bearerScheme checks Authorization: Bearer <token> against a list of tokens.
type bearerScheme struct {
	tokens  [][]byte
	digests []digest
}

func newBearer(cfg Config, p *problems) *bearerScheme {
	s := &bearerScheme{tokens: requireSecrets("tokens", cfg.Tokens, p)}
	s.digests = digestsOf(s.tokens)
	for i, t := range s.tokens {
		checkSendable(fmt.Sprintf("tokens[%d]", i), t, p)
	}
	return s
}

func (s *bearerScheme) check(r *Request) *Failure {
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
	if !matchesAny([]byte(tok), s.digests) {
		return fail(Bearer, ReasonMismatch, "no configured token matches")
	}
	return nil
}

func (s *bearerScheme) sign(_ []byte, _ string, _ time.Time, h http.Header, _ url.Values) error {
	h.Set("Authorization", "Bearer "+string(s.tokens[0]))
	return nil
}
