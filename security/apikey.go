package security

import (
	"net/http"
	"net/url"
	"time"
)

var apiKeyMethod = method{
	name: APIKey,
	keys: []Key{
		headerKey("header", fHeader),
		textKey("query", fQuery),
		secretsKey("keys", "keys: a list of at least one secret reference", fKeys),
	},
	prepare: newAPIKey,
	credentials: func(cfg Config) (credentialHeaders, string) {
		if cfg.Header != "" {
			return credentialHeaders{cfg.Header}, ""
		}
		return credentialHeaders{}, cfg.Query
	},
}

// apiKeyScheme checks a key sent in one header or one query parameter against the digests
// of the configured keys, which its Check holds.
type apiKeyScheme struct {
	header, query string // exactly one is set
}

func newAPIKey(cfg Config, p *problems) (scheme, material) {
	s := &apiKeyScheme{header: cfg.Header, query: cfg.Query}
	keys := requireSecrets("keys", cfg.Keys, p)
	for i, k := range keys {
		checkSendable("keys", i, k, p)
	}
	switch {
	case s.header == "" && s.query == "":
		p.add("exactly one of header or query is required")
	case s.header != "" && s.query != "":
		p.at("query", "header and query are mutually exclusive: set exactly one of header or query")
	case s.header != "":
		checkHeaderName("header", s.header, p)
	}
	return s, material{digests: digestsOf(keys)}
}

func (s *apiKeyScheme) check(req Request, c *Check) *Failure {
	r := &req
	where, vals := "query parameter "+s.query, r.Query[s.query] // query names are case-sensitive
	if s.header != "" {
		where, vals = "header "+s.header, headerValues(r.Header, s.header)
	}
	v, st := single(vals)
	switch st {
	case absent:
		return fail(APIKey, ReasonMissing, "no "+where)
	case conflicting:
		return fail(APIKey, ReasonMalformed, where+" sent more than once with different values")
	}
	if !matchesAny([]byte(v), c.digests) {
		return fail(APIKey, ReasonMismatch, "no configured key matches "+where)
	}
	return nil
}

func (s *apiKeyScheme) sign(c *Check, _ *signing, h http.Header, q url.Values) error {
	if s.header != "" {
		h.Set(s.header, string(c.raw(0)))
	} else {
		q.Set(s.query, string(c.raw(0)))
	}
	return nil
}

func (*apiKeyScheme) messageID(Request) (string, time.Duration) { return "", 0 }
