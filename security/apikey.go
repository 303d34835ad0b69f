package security

import (
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// apiKeyScheme checks a key sent in one header or one query parameter.
type apiKeyScheme struct {
	header, query string // exactly one is set
	keys          [][]byte
	digests       []digest
}

func newAPIKey(cfg Config, p *problems) *apiKeyScheme {
	s := &apiKeyScheme{header: cfg.Header, query: cfg.Query, keys: requireSecrets("keys", cfg.Keys, p)}
	s.digests = digestsOf(s.keys)
	for i, k := range s.keys {
		checkSendable(fmt.Sprintf("keys[%d]", i), k, p)
	}
	switch {
	case s.header == "" && s.query == "":
		p.add("one of header or query is required")
	case s.header != "" && s.query != "":
		p.add("header and query are mutually exclusive")
	case s.header != "":
		checkHeaderName("header", s.header, p)
	}
	return s
}

func (s *apiKeyScheme) check(r *Request) *Failure {
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
	if !matchesAny([]byte(v), s.digests) {
		return fail(APIKey, ReasonMismatch, "no configured key matches "+where)
	}
	return nil
}

func (s *apiKeyScheme) sign(_ []byte, _ string, _ time.Time, h http.Header, q url.Values) error {
	if s.header != "" {
		h.Set(s.header, string(s.keys[0]))
	} else {
		q.Set(s.query, string(s.keys[0]))
	}
	return nil
}
